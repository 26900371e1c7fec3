// What every strategy does with the replica it chose: ask its breaker, take one of its
// in-flight slots under max_inflight (shared across workers), and say when an open
// breaker will let a probe through. Strategies differ only in the order they try replicas.

import { tryAcquire } from './admission.js';
import type { Balanced, PickContext } from './balancer.js';
import { NoReplica } from './balancer.js';
import { Admission, type BreakerBoard, type BreakerOptions } from './breaker.js';
import type { WorkerHolds } from './worker-holds.js';

export class ReplicaGate<R extends Balanced> {
  readonly replicas: readonly R[];
  readonly #inflight: Int32Array;
  /** The in-flight slots and breaker probes this worker holds, per replica slot (WorkerHolds). */
  readonly #held: Int32Array;
  readonly #probes: Int32Array;
  readonly #breakers: BreakerBoard;
  readonly #breaker: BreakerOptions | null;
  /** 0: no limit. */
  readonly #maxInflight: number;

  constructor(replicas: readonly R[], inflight: Int32Array, holds: WorkerHolds, breakers: BreakerBoard, breaker: BreakerOptions | null, maxInflight: number) {
    this.replicas = replicas;
    this.#inflight = inflight;
    this.#held = holds.replicas;
    this.#probes = holds.probes;
    this.#breakers = breakers;
    this.#breaker = breaker;
    this.#maxInflight = maxInflight;
  }

  /** Requests in flight on `r`, across workers. */
  load(r: R): number {
    return Atomics.load(this.#inflight, r.slot);
  }

  /**
   * The replica of `list` (`exclude` aside) with the lowest `score`, looked at from `start`
   * round, so that replicas of equal score share the requests; null when there is none.
   */
  lowest(list: readonly R[], exclude: R | null, start: number, score: (r: R) => number): R | null {
    const n = list.length;
    let best: R | null = null;
    let bestScore = Infinity;
    for (let k = 0; k < n; k++) {
      const r = list[(start + k) % n]!;
      if (r === exclude) continue;
      const s = score(r);
      if (s < bestScore) {
        best = r;
        bestScore = s;
      }
    }
    return best;
  }

  /** Takes `r` when its breaker and max_inflight allow; `ctx.probe` says whether it is the breaker's probe. */
  take(ctx: PickContext, r: R, now: number): boolean {
    let admission = Admission.Allow;
    const breaker = this.#breaker;
    if (breaker !== null) {
      admission = this.#breakers.allow(r.slot, now, breaker);
      if (admission === Admission.Deny) return false;
    }
    if (!tryAcquire(this.#inflight, r.slot, this.#maxInflight)) {
      if (admission === Admission.Probe) this.#breakers.releaseProbe(r.slot);
      return false;
    }
    this.#held[r.slot]!++;
    if (admission === Admission.Probe) {
      this.#probes[r.slot] = 1;
      ctx.probe = true;
    } else ctx.probe = false;
    return true;
  }

  /** The last resort of every strategy: any replica that admits, in order; else why none does. */
  takeAny(ctx: PickContext, now: number, exclude: R | null, from = 0): R | NoReplica {
    const replicas = this.replicas;
    const n = replicas.length;
    if (n === 0) return NoReplica.None;
    let sawClosed = false;
    for (let k = 0; k < n; k++) {
      const r = replicas[(from + k) % n]!;
      if (r === exclude) continue;
      if (this.take(ctx, r, now)) return r;
      if (this.#breaker === null || this.#breakers.state(r.slot) === 0) sawClosed = true;
    }
    return sawClosed ? NoReplica.Saturated : NoReplica.BreakersOpen;
  }

  retryAfterMs(now: number): number {
    const breaker = this.#breaker;
    if (breaker === null) return 1000;
    let min = breaker.resetTimeoutMs;
    for (const r of this.replicas) min = Math.min(min, this.#breakers.msUntilProbe(r.slot, now, breaker));
    return Math.max(0, min);
  }
}
