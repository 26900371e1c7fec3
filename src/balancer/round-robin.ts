// Each replica in turn (per worker thread), skipping those whose breaker or max_inflight
// refuses: an even spread when replicas and requests are alike.

import type { Balanced, Balancer, PickContext } from './balancer.js';
import type { NoReplica } from './balancer.js';
import type { ReplicaGate } from './replica-gate.js';

export class RoundRobin<R extends Balanced> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;
  readonly #index: Map<R, number>;
  /** A new route table starts anywhere: tables change often, and always starting at 0 would favour the first replica. */
  #next: number;

  constructor(gate: ReplicaGate<R>) {
    this.#gate = gate;
    this.#index = new Map(gate.replicas.map((r, i) => [r, i]));
    this.#next = (Math.random() * gate.replicas.length) | 0;
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const picked = this.#gate.takeAny(ctx, now, exclude, this.#next);
    if (typeof picked !== 'number') this.#next = (this.#index.get(picked)! + 1) % this.#gate.replicas.length;
    return picked;
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
