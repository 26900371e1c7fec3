// Rate limits: the deployment's buckets and the API key's, checked all-or-nothing before
// the request goes anywhere (a cache hit counts too). In-memory buckets shared by the
// workers answer at once; Redis (several instances) pauses the request for its verdict.
// LLM-token buckets are charged when the exchange ends, by the tokens its replica's answer
// carried (Exchange.answerTokens): a refusal, a cache hit or an answer without usage takes none.

import type { SluiceError } from '../../errors/index.js';
import { ollamaApi } from '../../genai-endpoints.js';
import type { Logger } from '../../telemetry/index.js';
import { BucketKind, TokenCounter, type BucketRef, type RateLimiter, type Verdict } from '../../policy/index.js';
import type { Exchange } from '../exchange.js';
import { RETRY_AFTER } from '../respond.js';
import type { DeploymentRoute, KeyRoute } from '../route-table.js';
import { FilterStatus, type RequestFilter } from './filter.js';
import { wallNow } from '../clock.js';


export class RateLimitFilter implements RequestFilter<Exchange> {
  readonly #limiter: RateLimiter;
  readonly #logger: Logger;
  /** Why the store failed when that was last logged, and when (a changed reason is logged at most once a second). */
  #loggedReason = '';
  #loggedAt = 0;

  constructor(limiter: RateLimiter, logger: Logger) {
    this.#limiter = limiter;
    this.#logger = logger;
  }

  onHead(ex: Exchange): FilterStatus {
    const buckets = bucketsOf(ex.route, ex.key);
    if (buckets.length > 0) {
      ex.buckets = buckets;
      if (buckets.some(isTokenBucket)) ex.tokenCounter ??= new TokenCounter(ollamaApi(ex.upstreamPath));
    }
    return FilterStatus.Continue;
  }

  onRequest(ex: Exchange): FilterStatus {
    const buckets = ex.buckets;
    if (buckets === null) return FilterStatus.Continue;
    if (!this.#limiter.shared) return this.#admit(ex, this.#limiter.checkLocal(buckets, wallNow()));
    ex.hold();
    this.#limiter.checkShared(buckets).then(
      (verdict) => {
        if (!ex.finished && this.#admit(ex, verdict) === FilterStatus.Continue) ex.resume();
      },
      (err: Error) => this.#storeDown(ex, buckets, err),
    );
    return FilterStatus.Pause;
  }

  onDone(ex: Exchange): void {
    if (ex.buckets === null) return;
    const tokens = ex.answerTokens;
    if (tokens !== null) this.#limiter.chargeTokens(ex.buckets, tokens.tokens, wallNow());
  }

  #admit(ex: Exchange, verdict: Verdict): FilterStatus {
    ex.rateLimit = verdict;
    if (verdict.allowed) return FilterStatus.Continue;
    const retryAfter = String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000)));
    ex.reject('SLUICE_ERR_RATE_LIMITED', `rate limit exceeded: ${verdict.refusedBy!.limit}; retry in ${retryAfter} s`, [
      ['retry-after', retryAfter], ['ratelimit-limit', String(verdict.limit)],
      ['ratelimit-remaining', String(verdict.remaining)], ['ratelimit-reset', String(Math.ceil(verdict.resetMs / 1000))],
    ]);
    return FilterStatus.Answered;
  }

  /**
   * Redis did not answer (timed out, down, or its breaker is open): fail open onto this
   * instance's own buckets, or closed (503), as configured; counted and logged either way.
   */
  #storeDown(ex: Exchange, buckets: readonly BucketRef[], err: Error): void {
    if (ex.finished) return;
    const stats = ex.route.stats;
    const open = this.#limiter.failOpen;
    // Now and then, in either mode, and whenever the reason changes: the message says why
    // (Redis down, its password refused). The first failure may come before the client
    // knows why its connection went ("closed by Redis or the network"). An open breaker's
    // refusal is no new reason: the breaker said it opened, and between its probes, which
    // fail as before, it would alternate with theirs for as long as Redis is away.
    const now = Date.now();
    const refused = (err.cause as SluiceError | undefined)?.code === 'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN';
    if (++stats.rateLimitUnavailable % 1000 === 1 || (!refused && err.message !== this.#loggedReason && now - this.#loggedAt >= 1000)) {
      this.#loggedReason = err.message;
      this.#loggedAt = now;
      this.#logger.warn({ err: err.message, route: ex.route.id }, open ? 'rate-limit store unavailable: checking this instance\'s own buckets (fail-open)' : 'rate-limit store unavailable: refusing (fail-closed)');
    }
    // Admitting unchecked would let a burst that slows Redis down (or a Redis that is away)
    // through whole; the shared-memory buckets hold each instance to the limit on its own.
    if (open) {
      if (this.#admit(ex, this.#limiter.checkLocal(buckets, wallNow())) === FilterStatus.Continue) ex.resume();
      return;
    }
    ex.reject('SLUICE_ERR_RATE_LIMIT_UNAVAILABLE', 'the rate-limit store is unavailable', RETRY_AFTER);
  }
}

function bucketsOf(route: DeploymentRoute, key: KeyRoute | undefined): readonly BucketRef[] {
  if (key === undefined) return route.buckets;
  const onDeployment = key.bucketsOn(route.id);
  if (key.buckets.length === 0 && onDeployment.length === 0) return route.buckets;
  return route.buckets.length === 0 && onDeployment.length === 0 ? key.buckets : [...route.buckets, ...key.buckets, ...onDeployment];
}

function isTokenBucket(ref: BucketRef): boolean {
  return ref.kind === BucketKind.LlmTokens;
}
