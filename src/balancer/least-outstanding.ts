// Power of two random choices over least outstanding requests (the P2C of Envoy's
// LEAST_REQUEST and of Finagle). The in-flight counts live in a SharedArrayBuffer so that
// every worker thread sees the same load on a replica (DESIGN.md: N workers must not mean
// N separate views of a replica); breakers and max_inflight are honoured in the pick.

import { tryAcquire } from './admission.js';
import type { Balanced, Balancer, PickContext } from './balancer.js';
import { NoReplica } from './balancer.js';
import { Admission, type BreakerBoard, type BreakerOptions } from './breaker.js';

export class LeastOutstanding<R extends Balanced> implements Balancer<R> {
  readonly #replicas: readonly R[];
  readonly #inflight: Int32Array;
  readonly #breakers: BreakerBoard;
  readonly #breaker: BreakerOptions | null;
  /** 0: no limit. */
  readonly #maxInflight: number;

  constructor(replicas: readonly R[], inflight: Int32Array, breakers: BreakerBoard, breaker: BreakerOptions | null, maxInflight: number) {
    this.#replicas = replicas;
    this.#inflight = inflight;
    this.#breakers = breakers;
    this.#breaker = breaker;
    this.#maxInflight = maxInflight;
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const replicas = this.#replicas;
    const n = replicas.length;
    if (n === 0) return NoReplica.None;
    const inflight = this.#inflight;
    // Fast path: two random candidates, the less loaded first.
    if (n > 1 || exclude === null) {
      let a = replicas[(Math.random() * n) | 0]!;
      if (n > 1) {
        let b = replicas[(Math.random() * (n - 1)) | 0]!;
        if (b === a) b = replicas[n - 1]!;
        if (Atomics.load(inflight, b.slot) < Atomics.load(inflight, a.slot)) {
          const t = a;
          a = b;
          b = t;
        }
        if (a !== exclude && this.#take(ctx, a, now)) return a;
        if (b !== exclude && this.#take(ctx, b, now)) return b;
      } else if (this.#take(ctx, a, now)) {
        return a;
      }
    }
    // Slow path: every other replica; least loaded first would cost a sort: take any that admits.
    let sawClosed = false;
    for (let i = 0; i < n; i++) {
      const r = replicas[i]!;
      if (r === exclude) continue;
      if (this.#take(ctx, r, now)) return r;
      if (this.#breaker === null || this.#breakers.state(r.slot) === 0) sawClosed = true;
    }
    return sawClosed ? NoReplica.Saturated : NoReplica.BreakersOpen;
  }

  #take(ctx: PickContext, r: R, now: number): boolean {
    let admission = Admission.Allow;
    const breaker = this.#breaker;
    if (breaker !== null) {
      admission = this.#breakers.allow(r.slot, now, breaker);
      if (admission === Admission.Deny) return false;
    }
    if (!tryAcquire(this.#inflight, r.slot, this.#maxInflight)) {
      if (admission === Admission.Probe) this.#breakers.releaseProbe(r.slot, breaker!);
      return false;
    }
    ctx.probe = admission === Admission.Probe;
    return true;
  }

  retryAfterMs(now: number): number {
    const breaker = this.#breaker;
    if (breaker === null) return 1000;
    let min = breaker.resetTimeoutMs;
    for (const r of this.#replicas) min = Math.min(min, this.#breakers.msUntilProbe(r.slot, now, breaker));
    return Math.max(0, min);
  }
}
