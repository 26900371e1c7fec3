// The interface every replica-choice strategy implements. A strategy is built once per
// deployment per route table (its replicas never change under it) and is asked once per
// attempt; what a pick produces besides the replica goes into the caller's context, so
// the route stays immutable.

/** What a strategy needs of a replica: its slot in the shared per-replica counters. */
export interface Balanced {
  readonly slot: number;
}

/** Why a pick found no replica. Numbers, so that a pick returns a replica or a reason without allocating. */
export const enum NoReplica {
  /** No replica is ready. */
  None = 1,
  /** Every ready replica's breaker is open. */
  BreakersOpen = 2,
  /** Every ready replica is at its max_inflight: the request may wait in the queue. */
  Saturated = 3,
}

/** Per-attempt output of a pick. */
export interface PickContext {
  /** The pick is its replica's half-open breaker probe (set on every successful pick). */
  probe: boolean;
}

export interface Balancer<R extends Balanced> {
  /**
   * Chooses a replica and takes one of its in-flight slots, which the caller gives back
   * when the attempt ends; `exclude` is a replica this request already tried.
   */
  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica;
  /** Milliseconds until a replica may be picked again after NoReplica.BreakersOpen. */
  retryAfterMs(now: number): number;
  /** A response head came from `replica` after `ttfbMs`, at wall-clock `at` (only strategies that learn from it have this). */
  observe?(replica: R, ttfbMs: number, at: number): void;
}
