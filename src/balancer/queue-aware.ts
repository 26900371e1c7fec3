// Queue aware: the replica with the shortest line, counting what its own server reports
// (requests waiting in its queue, requests running, KV-cache use: vLLM, llama.cpp) with
// sluice's in-flight count across workers, which moves between scrapes. The Gateway API
// Inference Extension's endpoint picker does this inside Kubernetes; here the control plane
// scrapes and shares the figures (ReplicaLoadBoard). A replica whose KV cache is above
// kv_cache_limit takes requests only when every replica is; one that reports nothing is
// judged by sluice's count alone.

import type { Balanced, Balancer, PickContext } from './balancer.js';
import type { NoReplica } from './balancer.js';
import type { ReplicaGate } from './replica-gate.js';
import type { ReplicaLoadBoard } from './replica-load.js';

/** A queued request weighs this much more than one running: it waits for a whole answer. */
const WAITING_WEIGHT = 2;
/** Puts a replica with a full KV cache behind every other. */
const KV_FULL = 1 << 20;

export class QueueAware<R extends Balanced> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;
  readonly #board: ReplicaLoadBoard;
  readonly #kvLimitPermille: number;

  /** The replica's line: what its server reports, with sluice's own in-flight count. */
  readonly #score = (r: R): number => {
    const board = this.#board;
    const inflight = this.#gate.load(r);
    const waiting = board.waiting(r.slot);
    if (waiting < 0) return inflight;
    const running = board.running(r.slot);
    const kv = board.kvPermille(r.slot);
    return (running > inflight ? running : inflight) + WAITING_WEIGHT * waiting + (kv >= this.#kvLimitPermille ? KV_FULL : 0);
  };

  constructor(gate: ReplicaGate<R>, board: ReplicaLoadBoard, kvCacheLimit: number) {
    this.#gate = gate;
    this.#board = board;
    this.#kvLimitPermille = Math.round(kvCacheLimit * 1000);
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const gate = this.#gate;
    const replicas = gate.replicas;
    const n = replicas.length;
    const start = n > 1 ? (Math.random() * n) | 0 : 0;
    const best = gate.lowest(replicas, exclude, start, this.#score);
    if (best !== null && gate.take(ctx, best, now)) return best;
    return gate.takeAny(ctx, now, exclude, start);
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
