// The data plane's rate limiter: shared in-memory buckets by default, Redis when several
// instances must share limits. A verdict carries what the RateLimit-* headers need.

import { SluiceError } from '../errors/index.js';
import { BucketKind, type BucketRef } from './limits.js';
import type { BucketTake, RedisLimiter } from './redis-limiter.js';
import type { SharedBuckets, TakeResult } from './token-bucket.js';

/**
 * The result of a check: the tightest bucket's take (the one with the fewest tokens left
 * relative to its size; a refusing one if any), which is what the RateLimit-* headers report.
 */
export interface Verdict extends TakeResult {
  /** The bucket that refused; set on refusals only. */
  readonly refusedBy?: BucketRef;
}

export interface RateLimiterOptions {
  readonly local: SharedBuckets;
  readonly redis: RedisLimiter | null;
  /**
   * Redis unreachable or slow: check this instance's own buckets instead (true), or refuse
   * with 503; a warning and a metric either way.
   */
  readonly failOpen: boolean;
}

/** The shared store did not answer; the data plane checks its own buckets or refuses as `failOpen` says. */
export class RedisUnavailable extends SluiceError {
  constructor(message: string, options?: ErrorOptions) {
    super('SLUICE_ERR_RATE_LIMIT_UNAVAILABLE', message, undefined, options);
    this.name = 'RedisUnavailable';
  }
}

export class RateLimiter {
  readonly #local: SharedBuckets;
  readonly #redis: RedisLimiter | null;
  readonly failOpen: boolean;

  constructor(options: RateLimiterOptions) {
    this.#local = options.local;
    this.#redis = options.redis;
    this.failOpen = options.failOpen;
  }

  /** True when checks go to Redis and answer asynchronously. */
  get shared(): boolean {
    return this.#redis !== null;
  }

  /**
   * Synchronous check against the shared in-memory buckets; all-or-nothing. With Redis, the
   * fallback of a fail-open check that Redis did not answer: this instance alone holds the limit.
   */
  checkLocal(refs: readonly BucketRef[], now: number): Verdict {
    let verdict: TakeResult | null = null;
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i]!;
      const cost = ref.kind === BucketKind.Requests ? 1 : 0;
      const r = this.#local.take(ref.slot, now, ref.rule, cost, 1);
      if (!r.allowed) {
        // Give back what the earlier buckets gave for a request that is refused anyway.
        for (let j = 0; j < i; j++) {
          const prev = refs[j]!;
          if (prev.kind === BucketKind.Requests) this.#local.take(prev.slot, now, prev.rule, -1, 0);
        }
        return this.#longestRefusal(refs, i, r, now);
      }
      if (verdict === null || isTighter(r, verdict)) verdict = r;
    }
    if (verdict === null) throw new RangeError('checkLocal needs at least one bucket');
    return verdict;
  }

  /**
   * The refusal the client must wait longest for: `first`, made by refs[i], or that of a
   * bucket after it, looked at without taking anything. Retry-After is when every bucket
   * would admit the request, not only the first that refused it.
   */
  #longestRefusal(refs: readonly BucketRef[], i: number, first: TakeResult, now: number): Verdict {
    let worst = first;
    let by = refs[i]!;
    for (let j = i + 1; j < refs.length; j++) {
      const ref = refs[j]!;
      const r = this.#local.take(ref.slot, now, ref.rule, 0, 1);
      if (!r.allowed && r.retryAfterMs > worst.retryAfterMs) {
        worst = r;
        by = ref;
      }
    }
    return { ...worst, refusedBy: by };
  }

  /** The same check in Redis; rejects with RedisUnavailable when Redis does not answer in time. */
  async checkShared(refs: readonly BucketRef[]): Promise<Verdict> {
    const takes: BucketTake[] = refs.map((ref) => ({ key: ref.id, rule: ref.rule, cost: ref.kind === BucketKind.Requests ? 1 : 0, need: 1 }));
    try {
      const { results } = await this.#redis!.take(takes);
      const verdict = tightest(results);
      return verdict.allowed ? verdict : { ...verdict, refusedBy: refs[results.indexOf(verdict)] };
    } catch (err) {
      throw new RedisUnavailable(`rate-limit store unavailable: ${this.#redis!.failure(err)}`, { cause: err });
    }
  }

  /** Charges the LLM tokens a response used to its token buckets (may drive them negative). */
  chargeTokens(refs: readonly BucketRef[], tokens: number, now: number): void {
    if (tokens <= 0) return;
    const tokenRefs = refs.filter((r) => r.kind === BucketKind.LlmTokens);
    if (tokenRefs.length === 0) return;
    if (this.#redis === null) {
      this.#chargeLocal(tokenRefs, tokens, now);
      return;
    }
    // What Redis misses goes where a fail-open check falls back to, else an outage would
    // leave the fallback's token buckets full however much is generated.
    this.#redis.take(tokenRefs.map((ref) => ({ key: ref.id, rule: ref.rule, cost: tokens, need: 0 }))).catch(() => {
      if (this.failOpen) this.#chargeLocal(tokenRefs, tokens, Date.now());
    });
  }

  #chargeLocal(refs: readonly BucketRef[], tokens: number, now: number): void {
    for (const ref of refs) this.#local.take(ref.slot, now, ref.rule, tokens, 0);
  }
}

/**
 * The verdict of a check whose buckets answered `results`: of the refusing buckets, the
 * one that admits last (Retry-After is when all of them do); else the emptiest.
 */
function tightest(results: readonly TakeResult[]): Verdict {
  let best = results[0]!;
  for (let i = 1; i < results.length; i++) {
    const r = results[i]!;
    if (r.allowed !== best.allowed ? !r.allowed : r.allowed ? isTighter(r, best) : r.retryAfterMs > best.retryAfterMs) best = r;
  }
  return best;
}

function isTighter(a: TakeResult, b: TakeResult): boolean {
  return a.remaining / a.capacity < b.remaining / b.capacity;
}
