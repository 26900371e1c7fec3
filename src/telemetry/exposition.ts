import { worseState, type BreakerSnapshot } from '../dependencies/index.js';
import { DURATION_BUCKETS, OVERHEAD_BUCKETS, TOKEN_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS, type HistogramSnapshot, type StatsSnapshot } from './request-stats.js';

/** Sums the snapshots every worker sent for each deployment. */
export function mergeStats(perWorker: ReadonlyArray<Record<string, StatsSnapshot>>): Map<string, StatsSnapshot> {
  const out = new Map<string, StatsSnapshot>();
  for (const worker of perWorker) {
    for (const [deployment, s] of Object.entries(worker)) {
      const prev = out.get(deployment);
      out.set(deployment, prev === undefined ? s : addStats(prev, s));
    }
  }
  return out;
}

/** Sums the workers' refusals of requests no deployment owns, by code. */
export function mergeRefusals(perWorker: ReadonlyArray<Record<string, number>>): Record<string, number> {
  return perWorker.reduce<Record<string, number>>(addRecords, {});
}

function addStats(a: StatsSnapshot, b: StatsSnapshot): StatsSnapshot {
  return {
    codes: addRecords(a.codes, b.codes),
    buckets: addArrays(a.buckets, b.buckets),
    sum: a.sum + b.sum,
    count: a.count + b.count,
    ttfbBuckets: addArrays(a.ttfbBuckets, b.ttfbBuckets),
    fineBuckets: addArrays(a.fineBuckets, b.fineBuckets),
    fineTtfbBuckets: addArrays(a.fineTtfbBuckets, b.fineTtfbBuckets),
    ttfbSum: a.ttfbSum + b.ttfbSum,
    ttfbCount: a.ttfbCount + b.ttfbCount,
    clientAborts: a.clientAborts + b.clientAborts,
    upstreamErrors: addRecords(a.upstreamErrors, b.upstreamErrors),
    bytesOut: a.bytesOut + b.bytesOut,
    retries: a.retries + b.retries,
    fallbacks: a.fallbacks + b.fallbacks,
    rateLimitUnavailable: a.rateLimitUnavailable + b.rateLimitUnavailable,
    queueWait: addHistograms(a.queueWait, b.queueWait),
    cacheHits: a.cacheHits + b.cacheHits,
    cacheRedisHits: a.cacheRedisHits + b.cacheRedisHits,
    cacheMisses: a.cacheMisses + b.cacheMisses,
    cacheBypass: a.cacheBypass + b.cacheBypass,
    coalesced: a.coalesced + b.coalesced,
    coalescedCuts: a.coalescedCuts + b.coalescedCuts,
    failedAfterHead: a.failedAfterHead + b.failedAfterHead,
    cacheStoreErrors: a.cacheStoreErrors + b.cacheStoreErrors,
    predictions: a.predictions + b.predictions,
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    costRequestsUsd: a.costRequestsUsd + b.costRequestsUsd,
    costInputUsd: a.costInputUsd + b.costInputUsd,
    costOutputUsd: a.costOutputUsd + b.costOutputUsd,
    ttft: addHistograms(a.ttft, b.ttft),
    fineTtftBuckets: addArrays(a.fineTtftBuckets, b.fineTtftBuckets),
    tpot: addHistograms(a.tpot, b.tpot),
    inputTokenUsage: addHistograms(a.inputTokenUsage, b.inputTokenUsage),
    outputTokenUsage: addHistograms(a.outputTokenUsage, b.outputTokenUsage),
    overhead: addHistograms(a.overhead, b.overhead),
    refusals: addRecords(a.refusals, b.refusals),
  };
}

function addHistograms(a: HistogramSnapshot, b: HistogramSnapshot): HistogramSnapshot {
  return { buckets: addArrays(a.buckets, b.buckets), sum: a.sum + b.sum, count: a.count + b.count };
}

function addArrays(a: readonly number[], b: readonly number[]): number[] {
  return a.map((v, i) => v + (b[i] ?? 0));
}

function addRecords(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * Prometheus text exposition of the data-plane metrics.
 * `replicaCostUsd`: what each deployment's running replicas cost so far (the control plane
 * knows their running time), rendered in the same cost family as the workers' charges.
 * `unroutedRefusals`: refusals of requests no deployment owns (mergeRefusals), by code.
 */
export function renderStats(stats: Map<string, StatsSnapshot>, replicaCostUsd: ReadonlyMap<string, number> = new Map(), unroutedRefusals: Record<string, number> = {}): string {
  const lines: string[] = [];
  const family = (name: string, type: string, help: string): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  family('sluice_requests_total', 'counter', 'Requests answered by the data plane, by deployment, status code (499: client went away) and its class (2xx ... 5xx).');
  for (const [d, s] of stats) for (const [code, n] of Object.entries(s.codes)) lines.push(`sluice_requests_total{deployment="${esc(d)}",code="${code}",class="${code[0]}xx"} ${n}`);
  histogram(lines, 'sluice_request_duration_seconds', 'Time from request arrival to the end of the response.', stats, (s) => ({ buckets: s.buckets, sum: s.sum, count: s.count }));
  histogram(lines, 'sluice_upstream_ttfb_seconds', 'Time from request arrival to the upstream response head.', stats, (s) => ({ buckets: s.ttfbBuckets, sum: s.ttfbSum, count: s.ttfbCount }));
  family('sluice_client_aborts_total', 'counter', 'Clients that went away before their response ended (the upstream request was aborted).');
  for (const [d, s] of stats) lines.push(`sluice_client_aborts_total{deployment="${esc(d)}"} ${s.clientAborts}`);
  family('sluice_upstream_errors_total', 'counter', 'Upstream failures by error code.');
  for (const [d, s] of stats) for (const [code, n] of Object.entries(s.upstreamErrors)) lines.push(`sluice_upstream_errors_total{deployment="${esc(d)}",code="${code}"} ${n}`);
  family('sluice_response_bytes_total', 'counter', 'Response body bytes sent to clients.');
  for (const [d, s] of stats) lines.push(`sluice_response_bytes_total{deployment="${esc(d)}"} ${s.bytesOut}`);
  family('sluice_retries_total', 'counter', 'Requests sent again to another replica after a refused or reset connection.');
  for (const [d, s] of stats) lines.push(`sluice_retries_total{deployment="${esc(d)}"} ${s.retries}`);
  family('sluice_fallbacks_total', 'counter', 'Requests a deployment passed to one of its fallbacks (none of its replicas could take them, or one answered 429/5xx first).');
  for (const [d, s] of stats) lines.push(`sluice_fallbacks_total{deployment="${esc(d)}"} ${s.fallbacks}`);
  family('sluice_rate_limit_store_errors_total', 'counter', 'Rate-limit checks that found the shared store (Redis) unavailable.');
  for (const [d, s] of stats) lines.push(`sluice_rate_limit_store_errors_total{deployment="${esc(d)}"} ${s.rateLimitUnavailable}`);
  const counter = (name: string, help: string, pick: (s: StatsSnapshot) => number): void => {
    family(name, 'counter', help);
    for (const [d, s] of stats) lines.push(`${name}{deployment="${esc(d)}"} ${pick(s)}`);
  };
  family('sluice_cache_hits_total', 'counter', 'Requests answered from the response cache, by the tier that held the entry (memory: this worker; redis: shared by every instance).');
  for (const [d, s] of stats) {
    lines.push(`sluice_cache_hits_total{deployment="${esc(d)}",tier="memory"} ${s.cacheHits - s.cacheRedisHits}`, `sluice_cache_hits_total{deployment="${esc(d)}",tier="redis"} ${s.cacheRedisHits}`);
  }
  counter('sluice_cache_misses_total', 'Cacheable requests not in the cache that a replica answered (sent upstream, or coalesced with one that was); gateway errors are not misses.', (s) => s.cacheMisses);
  // The ratio too, for a dashboard without PromQL; over the process lifetime (rate() of the
  // counters gives it over any window).
  family('sluice_cache_hit_ratio', 'gauge', 'Cache hits / (hits + misses) since the gateway started; absent before the first cacheable request.');
  for (const [d, s] of stats) if (s.cacheHits + s.cacheMisses > 0) lines.push(`sluice_cache_hit_ratio{deployment="${esc(d)}"} ${s.cacheHits / (s.cacheHits + s.cacheMisses)}`);
  counter('sluice_cache_bypass_total', 'Requests to a deployment with a cache policy that were not cacheable.', (s) => s.cacheBypass);
  counter('sluice_coalesced_total', 'Requests that shared the upstream call of an identical request in flight.', (s) => s.coalesced);
  counter('sluice_coalesced_cut_total', 'Clients of a coalesced request whose connection was closed because they fell more than 8 MiB behind the fastest of them (SLUICE_ERR_CLIENT_TOO_SLOW).', (s) => s.coalescedCuts);
  family('sluice_tokens_total', 'counter', 'Tokens of the answers whose tokens were counted (deployments with token prices, a tokens-per-minute limit, or metrics.tokens), as the servers report them.');
  for (const [d, s] of stats) {
    lines.push(`sluice_tokens_total{deployment="${esc(d)}",direction="input"} ${s.inputTokens}`, `sluice_tokens_total{deployment="${esc(d)}",direction="output"} ${s.outputTokens}`);
  }
  family('sluice_cost_usd_total', 'counter', 'What each deployment cost, by kind: its replicas\' running time, its requests, their input and output tokens (config cost).');
  for (const [d, s] of stats) {
    const l = `deployment="${esc(d)}"`;
    lines.push(`sluice_cost_usd_total{${l},kind="requests"} ${s.costRequestsUsd}`, `sluice_cost_usd_total{${l},kind="input_tokens"} ${s.costInputUsd}`, `sluice_cost_usd_total{${l},kind="output_tokens"} ${s.costOutputUsd}`);
  }
  for (const [d, usd] of replicaCostUsd) lines.push(`sluice_cost_usd_total{deployment="${esc(d)}",kind="replica_hours"} ${usd}`);
  counter('sluice_cache_store_errors_total', 'Shared response cache (Redis) lookups and writes that failed or timed out; a failed lookup is answered as a miss.', (s) => s.cacheStoreErrors);
  family('sluice_gateway_refusals_total', 'counter', 'Requests the gateway answered itself with an error, by deployment (empty: no deployment, e.g. SLUICE_ERR_NO_ROUTE, SLUICE_ERR_MODEL_NOT_FOUND) and code (SLUICE_ERR_RATE_LIMITED: rate limited; SLUICE_ERR_QUEUE_FULL, SLUICE_ERR_NO_READY_REPLICA, SLUICE_ERR_BODY_TOO_LARGE, ...).');
  for (const [d, s] of stats) for (const [code, n] of Object.entries(s.refusals)) lines.push(`sluice_gateway_refusals_total{deployment="${esc(d)}",code="${code}"} ${n}`);
  // An empty deployment label, as Prometheus reads a missing one: a sum by (code) takes both.
  for (const [code, n] of Object.entries(unroutedRefusals)) lines.push(`sluice_gateway_refusals_total{deployment="",code="${code}"} ${n}`);
  histogram(lines, 'sluice_gateway_overhead_seconds', 'Proxied requests: time from arrival to the upstream request and from the upstream response end to the client response end, less queue waits. The clock is read once per event, so CPU time within an event is not in it (0 for most requests): it shows the time between the request\'s events on the gateway\'s side (body reads, Redis checks, a busy event loop, a slow client).', stats, (s) => s.overhead, OVERHEAD_BUCKETS);
  histogram(lines, 'gen_ai_server_time_to_first_token_seconds', 'GenAI time to first token: arrival to the first response body byte of 2xx answers (for a streamed answer its first token, for others the whole answer).', stats, (s) => s.ttft, TTFT_BUCKETS);
  histogram(lines, 'gen_ai_server_time_per_output_token_seconds', 'GenAI time per output token of streamed 2xx answers: from the first to the last body byte, over the output tokens after the first.', stats, (s) => s.tpot, TPOT_BUCKETS);
  lines.push('# HELP gen_ai_client_token_usage GenAI tokens per answer, by gen_ai_token_type (input, output), as the servers report them.', '# TYPE gen_ai_client_token_usage histogram');
  for (const [d, s] of stats) {
    histogramSeries(lines, 'gen_ai_client_token_usage', `deployment="${esc(d)}",gen_ai_token_type="input"`, s.inputTokenUsage, TOKEN_BUCKETS);
    histogramSeries(lines, 'gen_ai_client_token_usage', `deployment="${esc(d)}",gen_ai_token_type="output"`, s.outputTokenUsage, TOKEN_BUCKETS);
  }
  histogram(lines, 'sluice_queue_wait_seconds', 'Time requests waited in a deployment queue: for a replica under max_inflight, or held for a ready one.', stats, (s) => s.queueWait);
  return lines.join('\n') + '\n';
}

function histogram(
  lines: string[],
  name: string,
  help: string,
  stats: Map<string, StatsSnapshot>,
  pick: (s: StatsSnapshot) => HistogramSnapshot,
  bounds: readonly number[] = DURATION_BUCKETS,
): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
  for (const [d, s] of stats) histogramSeries(lines, name, `deployment="${esc(d)}"`, pick(s), bounds);
}

function histogramSeries(lines: string[], name: string, labels: string, h: HistogramSnapshot, bounds: readonly number[]): void {
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    cumulative += h.buckets[i] ?? 0;
    lines.push(`${name}_bucket{${labels},le="${bounds[i]}"} ${cumulative}`);
  }
  lines.push(`${name}_bucket{${labels},le="+Inf"} ${h.count}`, `${name}_sum{${labels}} ${h.sum}`, `${name}_count{${labels}} ${h.count}`);
}

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Log lines (access lines and others) written to stdout and dropped because it was slower than the traffic, every thread together. */
export function renderLogCounts(lines: number, dropped: number): string {
  return '# HELP sluice_log_lines_total Log lines (access lines included) written to stdout.\n' +
    '# TYPE sluice_log_lines_total counter\n' +
    `sluice_log_lines_total ${lines}\n` +
    '# HELP sluice_log_dropped_total Log lines dropped because stdout was slower than the traffic (log.access_max_buffer_bytes per worker).\n' +
    '# TYPE sluice_log_dropped_total counter\n' +
    `sluice_log_dropped_total ${dropped}\n`;
}

/** What became of the spans a worker sampled, since it started (sluice_trace_spans_total). */
export interface SpanCounts {
  /** Taken by the collector. */
  exported: number;
  /** Dropped because the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE, 2048): the collector slower than the traffic. */
  dropped: number;
  /** In a batch whose export failed (the collector down or refusing, its breaker open). */
  failed: number;
}

export function sumSpans(all: readonly SpanCounts[]): SpanCounts {
  const sum: SpanCounts = { exported: 0, dropped: 0, failed: 0 };
  for (const s of all) {
    sum.exported += s.exported;
    sum.dropped += s.dropped;
    sum.failed += s.failed;
  }
  return sum;
}

export function renderTraceSpans(spans: SpanCounts): string {
  return '# HELP sluice_trace_spans_total Spans the workers sampled, by outcome: exported, dropped (the export queue full: the collector slower than the traffic) or failed (its export failed).\n' +
    '# TYPE sluice_trace_spans_total counter\n' +
    `sluice_trace_spans_total{outcome="exported"} ${spans.exported}\n` +
    `sluice_trace_spans_total{outcome="dropped"} ${spans.dropped}\n` +
    `sluice_trace_spans_total{outcome="failed"} ${spans.failed}\n`;
}

/**
 * The breakers around the gateway's own dependencies (src/dependencies), every thread's
 * together: the data plane has one per worker per use, the control plane its own. A
 * dependency use's state is the worst of its threads' (an open breaker in any worker shows
 * as open); calls and transitions are summed.
 */
export function renderDependencyBreakers(snapshots: readonly BreakerSnapshot[]): string {
  const merged = new Map<string, BreakerSnapshot>();
  for (const b of snapshots) {
    const key = `${b.dependency}\n${b.use}`;
    const prev = merged.get(key);
    merged.set(key, prev === undefined ? b : {
      dependency: b.dependency, use: b.use, state: worseState(prev.state, b.state),
      opened: prev.opened + b.opened, halfOpened: prev.halfOpened + b.halfOpened, closed: prev.closed + b.closed,
      successes: prev.successes + b.successes, failures: prev.failures + b.failures, rejected: prev.rejected + b.rejected,
    });
  }
  const lines = [
    '# HELP sluice_dependency_breaker_state Circuit breaker around a dependency of the gateway (Redis, the MLflow registry, the OTLP collector), by use: 0 closed, 1 open, 2 half-open (as sluice_breaker_state); the worst of the worker threads that call it.',
    '# TYPE sluice_dependency_breaker_state gauge',
  ];
  const label = (b: BreakerSnapshot): string => `dependency="${esc(b.dependency)}",use="${esc(b.use)}"`;
  for (const b of merged.values()) lines.push(`sluice_dependency_breaker_state{${label(b)}} ${b.state}`);
  // Counters with one series per value of their last label.
  const split = (name: string, help: string, by: string, values: ReadonlyArray<readonly [string, (b: BreakerSnapshot) => number]>): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (const b of merged.values()) for (const [value, pick] of values) lines.push(`${name}{${label(b)},${by}="${value}"} ${pick(b)}`);
  };
  split('sluice_dependency_breaker_transitions_total', 'Times a dependency breaker went to a state (to: open, half_open, closed), every thread together.', 'to', [
    ['open', (b) => b.opened], ['half_open', (b) => b.halfOpened], ['closed', (b) => b.closed],
  ]);
  split('sluice_dependency_calls_total', 'Calls to a dependency through its breaker, by result: success, failure (its client\'s timeouts included), rejected (not made: the breaker was open).', 'result', [
    ['success', (b) => b.successes], ['failure', (b) => b.failures], ['rejected', (b) => b.rejected],
  ]);
  return lines.join('\n') + '\n';
}
