// Per-worker request counters kept in typed arrays: the hot path does two array
// increments per request instead of prom-client's per-call label hashing. The control
// plane sums every worker's snapshot at scrape time (see exposition.ts).

/** Upper bounds of the request-duration histogram, in seconds. */
export const DURATION_BUCKETS = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
]);

// Every status an upstream may send (three digits: the response parser takes 100-999).
const MAX_STATUS = 1000;

/**
 * A finer histogram of the same durations for quantiles (rollout analysis compares p99s,
 * where the Prometheus buckets above are up to 2.5x wide): four buckets per doubling of
 * microseconds, indexed with integer operations only. Bucket i covers
 * [fineLowerUs(i), fineLowerUs(i + 1)) microseconds; the last one everything above.
 */
export const FINE_BUCKETS = 128;

export function fineIndex(seconds: number): number {
  const us = seconds >= 0 ? Math.min(seconds * 1e6, 0x3fff_ffff) | 0 : 0;
  if (us < 4) return us;
  const e = 31 - Math.clz32(us);
  return (e - 1) * 4 + ((us >>> (e - 2)) & 3);
}

/** The lower bound of fine bucket i, in seconds. */
export function fineLower(i: number): number {
  if (i < 4) return i / 1e6;
  const e = (i >>> 2) + 1;
  return ((4 + (i & 3)) * 2 ** (e - 2)) / 1e6;
}

/** A quantile of a FINE_BUCKETS histogram, in seconds, linear within its bucket; null when it is empty. */
export function fineQuantile(counts: readonly number[], q: number): number | null {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (n > 0 && seen + n >= rank) {
      const lower = fineLower(i);
      // The last bucket has no upper bound: its lower bound is the answer.
      if (i === FINE_BUCKETS - 1) return lower;
      return lower + (fineLower(i + 1) - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return fineLower(FINE_BUCKETS - 1);
}

// The OpenTelemetry GenAI metrics' advisory bucket boundaries (semantic conventions,
// gen-ai-metrics: gen_ai.server.time_to_first_token, gen_ai.server.time_per_output_token,
// gen_ai.client.token.usage), so that sluice's histograms line up with other GenAI sources.
export const TTFT_BUCKETS = Object.freeze([0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]);
export const TPOT_BUCKETS = Object.freeze([0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5]);
export const TOKEN_BUCKETS = Object.freeze([1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]);
/** The gateway's side of a request is 0 to milliseconds: finer than DURATION_BUCKETS at the low end. */
export const OVERHEAD_BUCKETS = Object.freeze([0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);

export interface HistogramSnapshot {
  /** Per-bucket (non-cumulative) counts, one more than the bounds for +Inf. */
  readonly buckets: number[];
  readonly sum: number;
  readonly count: number;
}

/** A Prometheus-style histogram over fixed upper bounds, in a typed array. */
export class Histogram {
  readonly bounds: readonly number[];
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.#counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    this.#counts[boundIndex(this.bounds, value)]!++;
    this.#sum += value;
    this.#count++;
  }

  snapshot(): HistogramSnapshot {
    return { buckets: Array.from(this.#counts), sum: this.#sum, count: this.#count };
  }
}

export interface StatsSnapshot {
  /** status code -> count, only non-zero entries. */
  readonly codes: Record<string, number>;
  /** Per-bucket (non-cumulative) counts, one more than DURATION_BUCKETS for +Inf. */
  readonly buckets: number[];
  readonly sum: number;
  readonly count: number;
  readonly ttfbBuckets: number[];
  /** Per FINE_BUCKETS bucket counts of the request durations and of the times to first byte. */
  readonly fineBuckets: number[];
  readonly fineTtfbBuckets: number[];
  readonly ttfbSum: number;
  readonly ttfbCount: number;
  readonly clientAborts: number;
  readonly upstreamErrors: Record<string, number>;
  readonly bytesOut: number;
  readonly retries: number;
  readonly fallbacks: number;
  readonly rateLimitUnavailable: number;
  /** Waits in a deployment queue: for a replica under max_inflight, or held for a ready one. */
  readonly queueWait: HistogramSnapshot;
  readonly cacheHits: number;
  readonly cacheRedisHits: number;
  readonly cacheMisses: number;
  readonly cacheBypass: number;
  readonly coalesced: number;
  readonly coalescedCuts: number;
  readonly failedAfterHead: number;
  readonly cacheStoreErrors: number;
  /** Requests one of the deployment's replicas answered (priced or not), their tokens, and what they cost. */
  readonly predictions: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly costRequestsUsd: number;
  readonly costInputUsd: number;
  readonly costOutputUsd: number;
  /** Time to the first response body byte of 2xx answers (a streamed answer's first token). */
  readonly ttft: HistogramSnapshot;
  readonly fineTtftBuckets: number[];
  /** Streamed 2xx answers: time per output token after the first. */
  readonly tpot: HistogramSnapshot;
  /** Tokens per answer whose tokens were counted, by type. */
  readonly inputTokenUsage: HistogramSnapshot;
  readonly outputTokenUsage: HistogramSnapshot;
  /** Proxied requests: the time between their events on the gateway's side (read once per event: not its CPU time within one), less queue waits. */
  readonly overhead: HistogramSnapshot;
  /** Requests the gateway answered itself with an error, by code (rate limited, no replica, too large, ...). */
  readonly refusals: Record<string, number>;
}

/** A deployment's prices per request (config `cost`). */
export interface RequestPrices {
  readonly per_request: number;
  readonly per_1k_input_tokens: number;
  readonly per_1k_output_tokens: number;
}

export class RequestStats {
  readonly #codes = new Float64Array(MAX_STATUS);
  readonly #buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  readonly #ttfb = new Float64Array(DURATION_BUCKETS.length + 1);
  readonly #fine = new Float64Array(FINE_BUCKETS);
  readonly #fineTtfb = new Float64Array(FINE_BUCKETS);
  #sum = 0;
  #count = 0;
  #ttfbSum = 0;
  #ttfbCount = 0;
  clientAborts = 0;
  bytesOut = 0;
  /** Requests sent again to another replica after a refused or reset connection. */
  retries = 0;
  /** Requests this deployment passed to one of its fallbacks. */
  fallbacks = 0;
  /** Rate-limit checks that found the shared store (Redis) unavailable. */
  rateLimitUnavailable = 0;
  readonly #queueWait = new Histogram(DURATION_BUCKETS);
  readonly #upstreamErrors = new Map<string, number>();
  // Cache outcomes (deployments with a cache policy): a coalesced request is also a miss.
  cacheHits = 0;
  /** The hits among cacheHits whose entry came from Redis (the shared tier), not memory. */
  cacheRedisHits = 0;
  cacheMisses = 0;
  cacheBypass = 0;
  /** Requests that shared an identical request's upstream call instead of making their own. */
  coalesced = 0;
  /** Members of a coalesced request cut off for falling too far behind the others (Flight). */
  coalescedCuts = 0;
  /**
   * Answers whose head had gone out and that then ended as a gateway failure (a stream's
   * error event or line, a cut connection). Their status code is the head's (200), so the
   * error counts behind `top`, the dashboard and a rollout's check add them.
   */
  failedAfterHead = 0;
  /** Shared-cache (Redis) lookups and writes that failed or timed out. */
  cacheStoreErrors = 0;
  // Requests a replica answered and their tokens (whether the deployment has prices or not),
  // and what each kind cost.
  predictions = 0;
  inputTokens = 0;
  outputTokens = 0;
  costRequestsUsd = 0;
  costInputUsd = 0;
  costOutputUsd = 0;
  readonly #ttft = new Histogram(TTFT_BUCKETS);
  readonly #fineTtft = new Float64Array(FINE_BUCKETS);
  readonly #tpot = new Histogram(TPOT_BUCKETS);
  readonly #inputTokens = new Histogram(TOKEN_BUCKETS);
  readonly #outputTokens = new Histogram(TOKEN_BUCKETS);
  readonly #overhead = new Histogram(OVERHEAD_BUCKETS);
  readonly #refusals = new Map<string, number>();

  /** `status` 499 records a client that went away. Durations in seconds. */
  record(status: number, seconds: number): void {
    this.#codes[status < MAX_STATUS ? status : 0]!++;
    this.#buckets[bucketIndex(seconds)]!++;
    this.#fine[fineIndex(seconds)]!++;
    this.#sum += seconds;
    this.#count++;
  }

  recordTtfb(seconds: number): void {
    this.#ttfb[bucketIndex(seconds)]!++;
    this.#fineTtfb[fineIndex(seconds)]!++;
    this.#ttfbSum += seconds;
    this.#ttfbCount++;
  }

  /** A request its deployment answered, at its prices; returns what it cost. */
  charge(cost: RequestPrices, inputTokens: number, outputTokens: number): number {
    const input = (inputTokens / 1000) * cost.per_1k_input_tokens;
    const output = (outputTokens / 1000) * cost.per_1k_output_tokens;
    this.costRequestsUsd += cost.per_request;
    this.costInputUsd += input;
    this.costOutputUsd += output;
    return cost.per_request + input + output;
  }

  recordTtft(seconds: number): void {
    this.#ttft.observe(seconds);
    this.#fineTtft[fineIndex(seconds)]!++;
  }

  recordTimePerOutputToken(seconds: number): void {
    this.#tpot.observe(seconds);
  }

  /** An answer's tokens, as the server reported them (or counted from its stream). */
  recordTokens(input: number, output: number): void {
    this.inputTokens += input;
    this.outputTokens += output;
    if (input > 0) this.#inputTokens.observe(input);
    this.#outputTokens.observe(output);
  }

  recordOverhead(seconds: number): void {
    this.#overhead.observe(seconds);
  }

  refused(code: string): void {
    this.#refusals.set(code, (this.#refusals.get(code) ?? 0) + 1);
  }

  recordQueueWait(seconds: number): void {
    this.#queueWait.observe(seconds);
  }

  upstreamError(code: string): void {
    this.#upstreamErrors.set(code, (this.#upstreamErrors.get(code) ?? 0) + 1);
  }

  snapshot(): StatsSnapshot {
    const codes: Record<string, number> = {};
    for (let i = 0; i < MAX_STATUS; i++) if (this.#codes[i]! > 0) codes[i] = this.#codes[i]!;
    return {
      codes,
      buckets: Array.from(this.#buckets),
      sum: this.#sum,
      count: this.#count,
      ttfbBuckets: Array.from(this.#ttfb),
      fineBuckets: Array.from(this.#fine),
      fineTtfbBuckets: Array.from(this.#fineTtfb),
      ttfbSum: this.#ttfbSum,
      ttfbCount: this.#ttfbCount,
      clientAborts: this.clientAborts,
      upstreamErrors: Object.fromEntries(this.#upstreamErrors),
      bytesOut: this.bytesOut,
      retries: this.retries,
      fallbacks: this.fallbacks,
      rateLimitUnavailable: this.rateLimitUnavailable,
      queueWait: this.#queueWait.snapshot(),
      cacheHits: this.cacheHits,
      cacheRedisHits: this.cacheRedisHits,
      cacheMisses: this.cacheMisses,
      cacheBypass: this.cacheBypass,
      coalesced: this.coalesced,
      coalescedCuts: this.coalescedCuts,
      failedAfterHead: this.failedAfterHead,
      cacheStoreErrors: this.cacheStoreErrors,
      predictions: this.predictions,
      inputTokens: this.inputTokens,
      outputTokens: this.outputTokens,
      costRequestsUsd: this.costRequestsUsd,
      costInputUsd: this.costInputUsd,
      costOutputUsd: this.costOutputUsd,
      ttft: this.#ttft.snapshot(),
      fineTtftBuckets: Array.from(this.#fineTtft),
      tpot: this.#tpot.snapshot(),
      inputTokenUsage: this.#inputTokens.snapshot(),
      outputTokenUsage: this.#outputTokens.snapshot(),
      overhead: this.#overhead.snapshot(),
      refusals: Object.fromEntries(this.#refusals),
    };
  }
}

function bucketIndex(seconds: number): number {
  return boundIndex(DURATION_BUCKETS, seconds);
}

function boundIndex(bounds: readonly number[], value: number): number {
  let i = 0;
  while (i < bounds.length && value > bounds[i]!) i++;
  return i;
}
