// Power of two random choices over least outstanding requests (the P2C of Envoy's
// LEAST_REQUEST and of Finagle). The in-flight counts live in a SharedArrayBuffer so that
// every worker thread sees the same load on a replica (DESIGN.md: N workers must not mean
// N separate views of a replica); breakers and max_inflight are honoured in the pick.

import type { Balanced, Balancer, PickContext } from './balancer.js';
import { NoReplica } from './balancer.js';
import type { ReplicaGate } from './replica-gate.js';

export class LeastOutstanding<R extends Balanced> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;

  constructor(gate: ReplicaGate<R>) {
    this.#gate = gate;
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const gate = this.#gate;
    const replicas = gate.replicas;
    const n = replicas.length;
    if (n === 0) return NoReplica.None;
    // Fast path: two random candidates, the less loaded first.
    if (n > 1 || exclude === null) {
      let a = replicas[(Math.random() * n) | 0]!;
      if (n > 1) {
        let b = replicas[(Math.random() * (n - 1)) | 0]!;
        if (b === a) b = replicas[n - 1]!;
        if (gate.load(b) < gate.load(a)) {
          const t = a;
          a = b;
          b = t;
        }
        if (a !== exclude && gate.take(ctx, a, now)) return a;
        if (b !== exclude && gate.take(ctx, b, now)) return b;
      } else if (gate.take(ctx, a, now)) {
        return a;
      }
    }
    // Slow path: every other replica; least loaded first would cost a sort: take any that admits.
    return gate.takeAny(ctx, now, exclude);
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
