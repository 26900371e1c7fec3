// Requests waiting for a replica under max_inflight: one FIFO per deployment in each worker,
// with the deployment's queue length shared by all workers (DeploymentCounters), so that
// `max_length` bounds the whole gateway. Freed replicas go to the oldest waiter first;
// slots freed by other workers are found by polling every few ms while anything waits
// (workers share no event to wake each other by). Oldest across workers: each waiter has a
// ticket from a shared counter and each worker publishes its oldest one (`heads`); a worker
// whose oldest came after another worker's leaves the freed replica to it (taken at that
// worker's next poll). Without this, the worker where requests end serves its own waiters
// at once, every time, and those of the others time out behind newer ones.

import { ticketOlder, type DeploymentCounters } from './admission.js';
import { NoReplica } from './balancer.js';
import { Fifo } from './fifo.js';

export interface QueuedRequest {
  /** Holds a place in its deployment's queue; cleared when served or when it leaves. */
  queued: boolean;
  /** Its place in the order of the deployment's waiters across workers (DeploymentCounters.ticket). */
  ticket: number;
}

export interface QueueOwner {
  /** Slot in the shared per-deployment counters. */
  readonly slot: number;
}

export interface ReplicaQueueOptions<K, W, R> {
  readonly counters: DeploymentCounters;
  /** A replica for the oldest waiter of `key`, its in-flight slot taken; or why there is none. */
  readonly pick: (key: K, waiter: W, now: number) => R | NoReplica;
  /** Sends a waiter, no longer queued, to the replica picked for it. */
  readonly start: (key: K, waiter: W, replica: R, now: number) => void;
  readonly pollMs: number;
  /** Per deployment slot, this worker's oldest waiter's ticket (0: none), which the others read; and the other workers'. */
  readonly heads?: QueueHeads;
}

export interface QueueHeads {
  readonly own: Int32Array;
  readonly others: readonly Int32Array[];
}

export class ReplicaQueue<K extends QueueOwner, W extends QueuedRequest, R extends object> {
  readonly #queues = new Map<K, Fifo<W>>();
  readonly #options: ReplicaQueueOptions<K, W, R>;
  #timer: NodeJS.Timeout | null = null;
  #nextHeads: Int32Array | null = null;
  readonly #poll = (): void => this.drain();

  constructor(options: ReplicaQueueOptions<K, W, R>) {
    this.#options = options;
  }

  /** Queues `waiter`; false when the deployment's queue (across workers) already holds `maxLength`. */
  add(key: K, waiter: W, maxLength: number): boolean {
    if (maxLength === 0 || !this.#options.counters.enqueue(key.slot, maxLength)) return false;
    waiter.queued = true;
    waiter.ticket = this.#options.counters.ticket(key.slot);
    const heads = this.#options.heads;
    // Those already waiting here came before it: the head changes only when there was none.
    if (heads !== undefined && heads.own[key.slot] === 0) heads.own[key.slot] = waiter.ticket;
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = new Fifo<W>();
      this.#queues.set(key, queue);
    }
    queue.push(waiter);
    this.#timer ??= setInterval(this.#poll, this.#options.pollMs);
    return true;
  }

  /** A waiter that ended (client gone, timeout) gives its place back at once; its entry is skipped later. */
  leave(key: K, waiter: W): void {
    if (!waiter.queued) return;
    waiter.queued = false;
    this.#options.counters.dequeue(key.slot);
  }

  get waiting(): boolean {
    return this.#queues.size > 0;
  }

  /** Gives replicas that freed up to the oldest waiters. */
  drain(): void {
    const o = this.#options;
    const now = Date.now();
    for (const [key, queue] of this.#queues) {
      for (;;) {
        const waiter = queue.peek();
        if (waiter === undefined) break;
        if (!waiter.queued) {
          queue.shift();
          continue;
        }
        // Another worker holds an older waiter: the replica freed here is left for it.
        if (o.heads !== undefined && this.#olderElsewhere(o.heads, key.slot, waiter.ticket)) break;
        const replica = o.pick(key, waiter, now);
        if (typeof replica === 'number') {
          // The pick may end a waiter that can no longer be served (its deployment is gone).
          if (!waiter.queued) {
            queue.shift();
            continue;
          }
          break;
        }
        // Off the queue before it starts: a start that ends it at once drains again.
        queue.shift();
        waiter.queued = false;
        o.counters.dequeue(key.slot);
        o.start(key, waiter, replica, now);
      }
      if (queue.size === 0) this.#queues.delete(key);
    }
    if (o.heads !== undefined) this.#publishHeads(o.heads.own);
    if (this.#queues.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #olderElsewhere(heads: QueueHeads, slot: number, ticket: number): boolean {
    for (const h of heads.others) {
      const t = Atomics.load(h, slot);
      if (t !== 0 && ticketOlder(t, ticket)) return true;
    }
    return false;
  }

  /** This worker's oldest waiter of each deployment, for the others (a deployment may have a queue per route table). */
  #publishHeads(own: Int32Array): void {
    // Worked out aside, then copied: a slot that keeps waiters never reads 0 meanwhile.
    const next = this.#nextHeads ??= new Int32Array(own.length);
    next.fill(0);
    for (const [key, queue] of this.#queues) {
      const head = queue.peek();
      if (head === undefined || !head.queued) continue;
      const t = next[key.slot]!;
      if (t === 0 || ticketOlder(head.ticket, t)) next[key.slot] = head.ticket;
    }
    own.set(next);
  }
}
