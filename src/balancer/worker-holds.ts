// What one data-plane worker holds of the counts all workers share: in-flight slots per
// replica (max_inflight, least-outstanding), half-open breaker probes (one per replica,
// across workers) and places in deployment queues. Only that
// worker writes its own region, with plain writes (nobody else writes it); the control
// plane reads it once the worker has died, to give back what it held. Its requests died
// with it: left counted, they would hold a replica's max_inflight and a deployment's queue
// places until the gateway restarts, and a probe that never returns keeps its replica's
// breaker half-open, refusing every request.

import type { DeploymentCounters } from './admission.js';
import type { BreakerBoard } from './breaker.js';

export class WorkerHolds {
  /** Per replica slot: the in-flight slots this worker holds. */
  readonly replicas: Int32Array;
  /** Per replica slot: 1 while this worker's request is its breaker's half-open probe. */
  readonly probes: Int32Array;
  /** Per deployment slot: the queue places this worker holds. */
  readonly queues: Int32Array;
  /**
   * Per deployment slot: the ticket (DeploymentCounters.ticket) of this worker's oldest
   * request waiting for a replica; 0: none. The other workers read it, so that a replica
   * freed on any of them goes to the oldest waiter of the gateway, not of that worker.
   */
  readonly heads: Int32Array;

  constructor(buffer: SharedArrayBuffer, worker: number, replicaSlots: number, deploymentSlots: number) {
    const base = worker * WorkerHolds.#ints(replicaSlots, deploymentSlots) * Int32Array.BYTES_PER_ELEMENT;
    this.replicas = new Int32Array(buffer, base, replicaSlots);
    this.probes = new Int32Array(buffer, base + replicaSlots * Int32Array.BYTES_PER_ELEMENT, replicaSlots);
    this.queues = new Int32Array(buffer, base + 2 * replicaSlots * Int32Array.BYTES_PER_ELEMENT, deploymentSlots);
    this.heads = new Int32Array(buffer, base + (2 * replicaSlots + deploymentSlots) * Int32Array.BYTES_PER_ELEMENT, deploymentSlots);
  }

  static #ints(replicaSlots: number, deploymentSlots: number): number {
    return 2 * replicaSlots + 2 * deploymentSlots;
  }

  /** Every worker's region of `buffer` (as allocated), for reading the others' queue heads. */
  static all(buffer: SharedArrayBuffer, replicaSlots: number, deploymentSlots: number): WorkerHolds[] {
    const workers = buffer.byteLength / (WorkerHolds.#ints(replicaSlots, deploymentSlots) * Int32Array.BYTES_PER_ELEMENT);
    return Array.from({ length: workers }, (_, i) => new WorkerHolds(buffer, i, replicaSlots, deploymentSlots));
  }

  static allocate(workers: number, replicaSlots: number, deploymentSlots: number): SharedArrayBuffer {
    return new SharedArrayBuffer(workers * WorkerHolds.#ints(replicaSlots, deploymentSlots) * Int32Array.BYTES_PER_ELEMENT);
  }

  /** A dead worker's holds go back to the shared counts, and its region is cleared for the worker started in its place. */
  giveBack(inflight: Int32Array, breakers: BreakerBoard, counters: DeploymentCounters): void {
    const { replicas, probes, queues, heads } = this;
    for (let slot = 0; slot < replicas.length; slot++) {
      const n = replicas[slot]!;
      if (n !== 0) Atomics.sub(inflight, slot, n);
      // Reopened with its timer run out: the next request probes again.
      if (probes[slot] !== 0) breakers.releaseProbe(slot);
    }
    for (let slot = 0; slot < queues.length; slot++) {
      const n = queues[slot]!;
      if (n !== 0) counters.giveBackQueue(slot, n);
    }
    replicas.fill(0);
    probes.fill(0);
    queues.fill(0);
    // Its waiters died with it: the others no longer leave freed replicas for them.
    heads.fill(0);
  }
}
