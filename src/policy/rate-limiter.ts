// The data plane's rate limiter: shared in-memory buckets by default, Redis when several
// instances must share limits. A verdict carries what the RateLimit-* headers need.

import { BucketKind, type BucketRef } from './limits.js';
import type { BucketTake, RedisLimiter } from './redis-limiter.js';
import type { SharedBuckets, TakeResult } from './token-bucket.js';

export interface Verdict {
  readonly allowed: boolean;
  /** The tightest bucket: the one with the fewest tokens left relative to its size. */
  readonly limit: number;
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryAfterMs: number;
}

export interface RateLimiterOptions {
  readonly local: SharedBuckets;
  readonly redis: RedisLimiter | null;
  /** Redis unreachable or slow: admit (true, with a warning and a metric) or refuse with 503. */
  readonly failOpen: boolean;
}

export class RedisUnavailable extends Error {
  readonly code = 'SLUICE_ERR_RATE_LIMIT_UNAVAILABLE';
}

export class RateLimiter {
  readonly #local: SharedBuckets;
  readonly #redis: RedisLimiter | null;
  readonly failOpen: boolean;
  redisErrors = 0;

  constructor(options: RateLimiterOptions) {
    this.#local = options.local;
    this.#redis = options.redis;
    this.failOpen = options.failOpen;
  }

  /** True when checks go to Redis and answer asynchronously. */
  get shared(): boolean {
    return this.#redis !== null;
  }

  /** Synchronous check against the shared in-memory buckets; all-or-nothing. */
  checkLocal(refs: readonly BucketRef[], now: number): Verdict {
    const results: TakeResult[] = [];
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i]!;
      const cost = ref.kind === BucketKind.Requests ? 1 : 0;
      const r = this.#local.take(ref.slot, now, ref.rule, cost, 1);
      results.push(r);
      if (!r.allowed) {
        // Give back what the earlier buckets gave for a request that is refused anyway.
        for (let j = 0; j < i; j++) {
          const prev = refs[j]!;
          if (prev.kind === BucketKind.Requests) this.#local.take(prev.slot, now, prev.rule, -1, 0);
        }
        return verdict(refs, results, false);
      }
    }
    return verdict(refs, results, true);
  }

  /** The same check in Redis; rejects with RedisUnavailable when Redis does not answer in time. */
  async checkShared(refs: readonly BucketRef[]): Promise<Verdict> {
    const takes: BucketTake[] = refs.map((ref) => ({ key: ref.id, rule: ref.rule, cost: ref.kind === BucketKind.Requests ? 1 : 0, need: 1 }));
    try {
      const { allowed, results } = await this.#redis!.take(takes);
      return verdict(refs, results, allowed);
    } catch (err) {
      this.redisErrors++;
      throw new RedisUnavailable(`rate-limit store unavailable: ${(err as Error).message}`);
    }
  }

  /** Charges the LLM tokens a response used to its token buckets (may drive them negative). */
  chargeTokens(refs: readonly BucketRef[], tokens: number, now: number): void {
    if (tokens <= 0) return;
    const tokenRefs = refs.filter((r) => r.kind === BucketKind.LlmTokens);
    if (tokenRefs.length === 0) return;
    if (this.#redis === null) {
      for (const ref of tokenRefs) this.#local.take(ref.slot, now, ref.rule, tokens, 0);
      return;
    }
    this.#redis.take(tokenRefs.map((ref) => ({ key: ref.id, rule: ref.rule, cost: tokens, need: 0 }))).catch(() => {
      this.redisErrors++;
    });
  }
}

function verdict(refs: readonly BucketRef[], results: readonly TakeResult[], allowed: boolean): Verdict {
  let best = 0;
  let bestShare = Infinity;
  for (let i = 0; i < results.length; i++) {
    const r = results[i]!;
    // A refusing bucket is always the one to report; otherwise the emptiest.
    const share = (r.allowed ? 1 : -1) + r.remaining / refs[i]!.rule.capacity;
    if (share < bestShare) {
      bestShare = share;
      best = i;
    }
  }
  const r = results[best]!;
  return { allowed, limit: refs[best]!.rule.capacity, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs };
}
