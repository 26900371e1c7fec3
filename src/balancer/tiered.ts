// Replicas in ranked tiers: the least loaded replica of the first tier that can take the
// request (breaker closed or probing, under max_inflight), the next tier only when none of
// it can. `failover` ranks by priority (seed 001's primary -> secondary -> tertiary);
// `lowest_cost` by cost, so that equal prices share the load.

import type { Balanced, Balancer, PickContext } from './balancer.js';
import type { NoReplica } from './balancer.js';
import type { ReplicaGate } from './replica-gate.js';

export class Tiered<R extends Balanced> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;
  /** Replicas of equal rank, best rank first. */
  readonly #tiers: readonly (readonly R[])[];
  readonly #load = (r: R): number => this.#gate.load(r);

  constructor(gate: ReplicaGate<R>, rank: (r: R) => number) {
    this.#gate = gate;
    const byRank = new Map<number, R[]>();
    for (const r of gate.replicas) {
      const k = rank(r);
      const tier = byRank.get(k);
      if (tier === undefined) byRank.set(k, [r]);
      else tier.push(r);
    }
    this.#tiers = [...byRank.keys()].sort((a, b) => a - b).map((k) => byRank.get(k)!);
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const gate = this.#gate;
    for (const tier of this.#tiers) {
      const n = tier.length;
      const start = n > 1 ? (Math.random() * n) | 0 : 0;
      const least = gate.lowest(tier, exclude, start, this.#load);
      if (least === null) continue;
      if (gate.take(ctx, least, now)) return least;
      for (let k = 0; k < n; k++) {
        const r = tier[(start + k) % n]!;
        if (r !== exclude && r !== least && gate.take(ctx, r, now)) return r;
      }
    }
    // No tier can: say why (takeAny tries them all once more and names the reason).
    return gate.takeAny(ctx, now, exclude);
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
