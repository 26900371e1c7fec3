// Replicas by weight (config `urls: [{url, weight}]`): a replica of weight 3 gets three times
// the requests of one of weight 1, as in Envoy's weighted endpoints; one whose breaker or
// max_inflight refuses gives its share to the others. Weight 0: only when no other can take it.

import type { Balanced, Balancer, PickContext } from './balancer.js';
import type { NoReplica } from './balancer.js';
import type { ReplicaGate } from './replica-gate.js';
import { cumulativeWeights, pickWeighted } from './weighted.js';

export class WeightedReplicas<R extends Balanced & { readonly weight: number }> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;
  readonly #cumulative: Float64Array;

  constructor(gate: ReplicaGate<R>) {
    this.#gate = gate;
    this.#cumulative = cumulativeWeights(gate.replicas.map((r) => r.weight));
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const gate = this.#gate;
    const replicas = gate.replicas;
    // Two draws: a refused replica rarely refuses twice in a row, and a second draw keeps
    // the split close to the weights; after that, any weighted replica that admits, and
    // then any at all.
    for (let i = 0; i < 2; i++) {
      const r = pickWeighted(replicas, this.#cumulative);
      if (r !== undefined && r !== exclude && r.weight > 0 && gate.take(ctx, r, now)) return r;
    }
    const n = replicas.length;
    const start = (Math.random() * n) | 0;
    for (let k = 0; k < n; k++) {
      const r = replicas[(start + k) % n]!;
      if (r !== exclude && r.weight > 0 && gate.take(ctx, r, now)) return r;
    }
    return gate.takeAny(ctx, now, exclude, start);
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
