// Token buckets whose state lives in a SharedArrayBuffer, so that every worker thread
// draws from the same bucket: N workers never mean N times the limit. The control plane
// lays out one slot per (rule, key) it knows; workers only take and refund.

/**
 * A limit: `limit` tokens refilled per `periodMs`, into a bucket of `capacity` tokens.
 * The capacity is the limit, but at least 1 (`ruleOf`): a request needs a whole token, so
 * a limit below 1 (0.5 per second) is a burst of one refilled at that rate (one every 2 s).
 */
export interface BucketRule {
  readonly limit: number;
  readonly capacity: number;
  readonly periodMs: number;
}

/** The rule of a configured limit: `limit` per `periodMs`, a bucket of at least one token. */
export function ruleOf(limit: number, periodMs: number): BucketRule {
  return { limit, capacity: Math.max(1, limit), periodMs };
}

export interface TakeResult {
  readonly allowed: boolean;
  /** The configured limit (tokens per period): what RateLimit-Limit reports. */
  readonly limit: number;
  /** The bucket's size: the limit, at least 1. */
  readonly capacity: number;
  /** The bucket's level after this take (fractional; negative after a post-paid charge). */
  readonly tokens: number;
  /** Whole tokens left after this take (>= 0). */
  readonly remaining: number;
  /** Milliseconds until one token is available again (0 when allowed). */
  readonly retryAfterMs: number;
  /** Milliseconds until the bucket is full again. */
  readonly resetMs: number;
}

// Float64 fields per slot: tokens, last refill time (ms).
const F_TOKENS = 0;
const F_LAST = 1;
const FLOATS = 2;

/**
 * The arithmetic shared by the in-memory buckets and the Redis Lua script (kept in step
 * with redis-limiter.ts): refill by elapsed time, then take `cost` if `tokens >= need`.
 * Post-paid costs (LLM tokens counted from a response) are taken with need 0 and may
 * drive the bucket negative; later requests wait until it refills.
 */
export function refillAndTake(tokens: number, last: number, now: number, rule: BucketRule, cost: number, need: number): TakeResult {
  const rate = rule.limit / rule.periodMs;
  let t = last === 0 ? rule.capacity : Math.min(rule.capacity, tokens + Math.max(0, now - last) * rate);
  // need 0 is a post-paid charge (or a refund): always applied, even below zero, else the
  // tokens of responses that end once the bucket is negative would never be counted.
  const allowed = need === 0 || (t >= need && t >= cost);
  if (allowed) t -= cost;
  const missing = allowed ? 0 : Math.max(need, cost) - t;
  return {
    allowed,
    limit: rule.limit,
    capacity: rule.capacity,
    tokens: t,
    remaining: Math.max(0, Math.floor(t)),
    retryAfterMs: allowed ? 0 : Math.ceil(missing / rate),
    resetMs: Math.ceil((rule.capacity - t) / rate),
  };
}

export class SharedBuckets {
  readonly #floats: Float64Array;
  readonly #locks: Int32Array;

  constructor(buffers: { floats: SharedArrayBuffer; locks: SharedArrayBuffer }) {
    this.#floats = new Float64Array(buffers.floats);
    this.#locks = new Int32Array(buffers.locks);
  }

  static allocate(slots: number): { floats: SharedArrayBuffer; locks: SharedArrayBuffer } {
    return {
      floats: new SharedArrayBuffer(slots * FLOATS * Float64Array.BYTES_PER_ELEMENT),
      locks: new SharedArrayBuffer(slots * Int32Array.BYTES_PER_ELEMENT),
    };
  }

  get slots(): number {
    return this.#locks.length;
  }

  /** Takes `cost` tokens if at least `need` are there (need = cost for admission, 0 for post-paid). */
  take(slot: number, now: number, rule: BucketRule, cost = 1, need = cost): TakeResult {
    const f = this.#floats;
    const base = slot * FLOATS;
    while (Atomics.compareExchange(this.#locks, slot, 0, 1) !== 0);
    const result = refillAndTake(f[base + F_TOKENS]!, f[base + F_LAST]!, now, rule, cost, need);
    f[base + F_TOKENS] = result.tokens;
    f[base + F_LAST] = now;
    Atomics.store(this.#locks, slot, 0);
    return result;
  }

  /** Empties the slot for a bucket that starts full (its next take refills it to capacity). */
  reset(slot: number): void {
    while (Atomics.compareExchange(this.#locks, slot, 0, 1) !== 0);
    this.#floats[slot * FLOATS + F_TOKENS] = 0;
    this.#floats[slot * FLOATS + F_LAST] = 0;
    Atomics.store(this.#locks, slot, 0);
  }
}
