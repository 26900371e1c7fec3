// The result of one bench run, as JSON (machine-read) and as Markdown (the table printed to
// stdout and kept under bench/results/).

import type { OpenLoopResult } from '../open-loop.js';
import type { Measured } from './rotation.js';
import type { Machine } from './setup.js';
import { round } from './stats.js';

/** One target's figures as reported: what the rotation measured, less its raw rounds. */
export interface LoadRow extends Omit<Measured, 'rounds'> {
  readonly key: string;
  readonly label: string;
  /** This row's req/s (or streams/s) over nginx's, measured in the same rotation. */
  readonly vs_nginx: number | null;
  readonly rounds_rps: readonly number[];
}

/** One balancing strategy's path on the strategies instance, against least_outstanding's on it. */
export interface StrategyRow extends Omit<LoadRow, 'vs_nginx'> {
  readonly strategy: string;
  /** The deployment whose route was loaded (`/<deployment>/predict`). */
  readonly deployment: string;
  readonly replicas: number;
  /** Median of per-round req/s ratios, each against a least_outstanding measurement next to it. */
  readonly vs_least_outstanding: number | null;
  /** Each round's ratio (empty for least_outstanding itself). */
  readonly rounds_vs_least_outstanding: readonly number[];
  /** CPU per request over least_outstanding's (medians): above 1, the strategy spends more. */
  readonly cpu_vs_least_outstanding: number | null;
}

export interface LatencyRow extends OpenLoopResult {
  readonly key: string;
  readonly label: string;
  /** Scheduled-time latency minus the direct upstream's, microseconds. */
  readonly overhead_mean_us: number | null;
  readonly overhead_p99_us: number | null;
  readonly overhead_p99_us_by_round: readonly number[];
}

export interface StreamCheck {
  readonly target: string;
  readonly checked: number;
  readonly complete: number;
  readonly data_events_per_stream: number;
  readonly failures: readonly string[];
}

export interface ChunkLatencyRow {
  readonly key: string;
  readonly label: string;
  readonly chunks: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly p999_us: number;
  readonly max_us: number;
  /** Minus the direct run of the same round, median over rounds; null for the direct row. */
  readonly overhead_p50_us: number | null;
  readonly overhead_p99_us: number | null;
}

/** Many concurrent long-lived SSE streams through sluice (DESIGN.md: 10,000 in under 1 GiB). */
export interface IdleStreams {
  readonly streams: number;
  readonly started: number;
  readonly errors: number;
  readonly open_seconds: number;
  readonly rss_before_mib: number;
  readonly rss_open_mib: number;
  readonly kib_per_stream: number;
  /** rss_before plus 10,000 times the per-stream growth: the DESIGN.md figure when fewer could be opened. */
  readonly rss_at_10k_estimate_mib: number;
  /** Generations in flight at the simulator just before the clients left. */
  readonly upstream_active: number;
  readonly upstream_cancelled: number;
  readonly cancel_seconds: number;
  readonly events: number;
}

export interface Results {
  readonly sluice_vs_nginx_rps: number | null;
  /** Throughput with every policy on, against the same nginx (issue 5: >= 0.85x). */
  readonly sluice_policies_vs_nginx_rps: number | null;
  /** Policies on with every request traced (OTLP export included) over policies on without tracing. */
  readonly sluice_traced_vs_policies_rps: number | null;
  /** Both appending X-Forwarded-For (policies off): what sluice's per-request client-address lookup (a getpeername) costs it. */
  readonly sluice_vs_nginx_rps_with_xff: number | null;
  readonly sluice_vs_nginx_sse: number | null;
  /** The AI request (POST /v1/chat/completions, SDK headers): sluice as shipped over nginx with its JSON access log on. */
  readonly sluice_vs_nginx_ai_defaults: number | null;
  /** The same with both access logs off. */
  readonly sluice_vs_nginx_ai_nolog: number | null;
  /** Streamed (50 tokens), sluice as shipped over nginx with its access log on. */
  readonly sluice_vs_nginx_ai_sse: number | null;
  /** The AI request at sluice's root (routed by the body's model) over the same on its path route. */
  readonly sluice_root_vs_path_ai: number | null;
  /** The AI request through the thinnest proxy on uWS.js, and on Node's TCP handles, over nginx without a log. */
  readonly uws_floor_vs_nginx_ai: number | null;
  readonly raw_floor_vs_nginx_ai: number | null;
  /** sluice as shipped (the node front end) over the same with listen.front_end: uws, req/s on the AI request. */
  readonly node_vs_uws_front_end_ai: number | null;
  /** sluice as shipped over each peer gateway, req/s on the AI request (null: the peer could not be installed). */
  readonly sluice_vs_portkey_ai: number | null;
  readonly sluice_vs_litellm_ai: number | null;
  /** sluice's CPU per request (per stream) over nginx's: above 1, sluice spends more. */
  readonly sluice_vs_nginx_cpu_per_req: number | null;
  readonly sluice_vs_nginx_cpu_per_stream: number | null;
  readonly overhead_mean_us: number | null;
  readonly overhead_p99_us: number | null;
  readonly nginx_overhead_mean_us: number | null;
  readonly nginx_overhead_p99_us: number | null;
  /** sluice's p99 overhead over nginx's on the small GET (open loop, same run; issue 19: <= 1.5x). */
  readonly sluice_vs_nginx_p99_overhead: number | null;
  /** The AI request at the same rate: sluice as shipped and nginx with its access log, each minus the upstream alone. */
  readonly ai_overhead_p99_us: number | null;
  readonly nginx_ai_overhead_p99_us: number | null;
  readonly sluice_vs_nginx_ai_p99_overhead: number | null;
  /** sluice's cache-hit req/s over nginx's proxy_cache-hit req/s (same POST, same rotation). */
  readonly sluice_cache_hit_vs_nginx_cache_hit_rps: number | null;
  /** sluice's cache-hit req/s over the same POST forwarded by sluice with the cache off: what a hit saves. */
  readonly sluice_cache_hit_vs_sluice_forward_rps: number | null;
  /** Each strategy's req/s over least_outstanding's (2 replicas each, same instance and rounds). */
  readonly strategies_vs_least_outstanding_rps: Readonly<Record<string, number | null>> | null;
  /** The GET over TLS 1.3 (TLS_AES_128_GCM_SHA256), sluice over nginx, same certificate (issue 17: >= 0.9x). */
  readonly sluice_vs_nginx_tls: number | null;
  /** The same over TLS 1.2 (ECDHE-RSA-AES128-GCM-SHA256). */
  readonly sluice_vs_nginx_tls12: number | null;
  readonly date: string;
  readonly command: string;
  readonly quick: boolean;
  readonly machine: Machine;
  readonly pinning: string;
  readonly priority: string;
  readonly load_tool: string;
  readonly schedule: { rounds: number; seconds: number; warmup_seconds: number; connections: number };
  readonly throughput: readonly LoadRow[] | null;
  /** The AI request's rows (vs_nginx: against nginx with the same logging) and its streamed rows; `peers`: why a peer is missing. */
  readonly ai: { readonly rows: readonly LoadRow[]; readonly sse: readonly LoadRow[]; readonly peers: readonly string[] } | null;
  readonly clients: readonly LoadRow[] | null;
  readonly sse: readonly LoadRow[] | null;
  readonly sse_checks: readonly StreamCheck[] | null;
  /** Forwarded and cache-hit POSTs; each cache row's vs_nginx is against nginx's cache hit. */
  readonly cache: readonly LoadRow[] | null;
  /** The policies-on sluice's cache counters at the end of the run (every deployment, every tier). */
  readonly cache_counters: { readonly hits: number; readonly misses: number } | null;
  readonly strategies: {
    readonly rounds: number;
    readonly seconds: number;
    readonly rows: readonly StrategyRow[];
  } | null;
  /** The GET over TLS: nginx and sluice, TLS 1.3 and 1.2 rows (vs_nginx: against nginx's of the same protocol). */
  readonly tls: readonly LoadRow[] | null;
  readonly idle_streams: IdleStreams | null;
  /** Upstream write to client read of streamed chunks, under concurrent streams. */
  readonly chunk_latency: {
    readonly streams: number;
    readonly chunk_ms: number;
    readonly seconds: number;
    readonly rounds: number;
    readonly rows: readonly ChunkLatencyRow[];
  } | null;
  readonly latency: {
    readonly rate: number;
    readonly seconds: number;
    readonly connections: number;
    readonly rounds: number;
    /** The offered rate over sluice's closed-loop maximum from the throughput rows. */
    readonly fraction_of_sluice_max: number | null;
    readonly rows: readonly LatencyRow[];
  } | null;
  readonly sluice: { readonly uws_native: boolean | null; readonly requests_by_code: Record<string, number>; readonly upstream_errors: number };
  readonly measurements_repeated: number;
  readonly measurements_disturbed: number;
  readonly warnings: readonly string[];
  readonly seconds_elapsed: number;
}

const fmt = (x: number | null, digits = 0): string => (x === null || Number.isNaN(x) ? '—' : round(x, digits).toLocaleString('en-US'));
const ratio = (x: number | null): string => (x === null ? '—' : `${x.toFixed(2)}x`);
// Strategies differ by a few percent: two decimals would hide what the 3% line is about.
const ratio3 = (x: number | null): string => (x === null ? '—' : `${x.toFixed(3)}x`);
const signed = (x: number | null): string => (x === null ? '—' : `${x >= 0 ? '+' : ''}${Math.round(x)}`);

function loadTable(rows: readonly LoadRow[], unit: string, withBytes: boolean): string[] {
  const per = unit === 'streams/s' ? 'stream' : 'req';
  const head = `| target | ${unit} | ${withBytes ? 'MB/s | ' : ''}p50 ms | p99 ms | vs nginx | proxy CPU us/${per} | proxy process CPU % | core busy % proxy / load | others CPU % | errors | per-round ${unit} |`;
  const sep = `|---|---:|${withBytes ? '---:|' : ''}---:|---:|---:|---:|---:|---:|---:|---:|---|`;
  return [head, sep, ...rows.map((r) =>
    `| ${r.label} | ${fmt(r.rps)} | ${withBytes ? `${fmt(r.bytes_per_s / 1e6, 1)} | ` : ''}${fmt(r.p50_ms, 2)} | ${fmt(r.p99_ms, 2)} | ${ratio(r.vs_nginx)} | ${fmt(r.proxy_cpu_us_per_req, 1)} | ${fmt(r.proxy_process_cpu_pct)} | ${fmt(r.proxy_core_busy_pct)} / ${fmt(r.load_core_busy_pct)} | ${fmt(r.foreign_cpu_pct)} | ${r.errors + r.non2xx} | ${r.rounds_rps.map((x) => Math.round(x)).join(', ')}${r.disturbed_rounds > 0 ? ` (${r.disturbed_rounds} disturbed)` : ''} |`)];
}

function lowestStrategy(rows: readonly StrategyRow[] | null): string {
  const two = (rows ?? []).filter((x) => x.replicas > 1 && x.vs_least_outstanding !== null && x.strategy !== 'least_outstanding');
  if (two.length === 0) return '—';
  const low = two.reduce((a, x) => (x.vs_least_outstanding! < a.vs_least_outstanding! ? x : a));
  return `${ratio3(low.vs_least_outstanding)} (${low.strategy})`;
}

function verdict(value: number | null, ok: (v: number) => boolean): string {
  if (value === null) return '';
  return ok(value) ? ' (meets target)' : ' (MISSES target)';
}

/** The strategies whose req/s fell more than 3% below least_outstanding's. */
export function costlyStrategies(rows: readonly StrategyRow[]): StrategyRow[] {
  return rows.filter((x) => x.replicas > 1 && x.vs_least_outstanding !== null && x.vs_least_outstanding < 0.97);
}

function strategyTable(s: NonNullable<Results['strategies']>): string[] {
  const costly = costlyStrategies(s.rows);
  return [
    `## Balancing strategies (GET, 23-byte JSON body, closed loop; one sluice instance, ${s.rounds} round(s) x ${s.seconds} s)`,
    '',
    'One remote deployment per strategy, each over the same two upstream ports (policies off); `vs least_outstanding` is the median of per-round ratios, each against a least_outstanding (the default) measurement made next to it. least_outstanding\'s per-round req/s are the medians of its measurements in each round.',
    '',
    '| strategy | deployment | replicas | req/s | vs least_outstanding | per-round vs least_outstanding | proxy CPU us/req | CPU vs least_outstanding | p99 ms | errors | per-round req/s |',
    '|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|',
    ...s.rows.map((x) => `| ${x.strategy} | ${x.deployment} | ${x.replicas} | ${fmt(x.rps)} | ${ratio3(x.vs_least_outstanding)} | ${x.rounds_vs_least_outstanding.map((v) => v.toFixed(3)).join(', ')} | ${fmt(x.proxy_cpu_us_per_req, 1)} | ${ratio3(x.cpu_vs_least_outstanding)} | ${fmt(x.p99_ms, 2)} | ${x.errors + x.non2xx} | ${x.rounds_rps.map((v) => Math.round(v)).join(', ')}${x.disturbed_rounds > 0 ? ` (${x.disturbed_rounds} disturbed)` : ''} |`),
    '',
    costly.length === 0
      ? '- every two-replica strategy within 3% of least_outstanding\'s req/s'
      : `- more than 3% below least_outstanding: ${costly.map((x) => `${x.strategy} ${ratio3(x.vs_least_outstanding)} (${((1 - x.vs_least_outstanding!) * 100).toFixed(1)}% fewer req/s)`).join(', ')}`,
    '',
  ];
}

export function renderMarkdown(r: Results): string {
  const chunkOverhead = r.chunk_latency?.rows.find((x) => x.key === 'sluice')?.overhead_p99_us ?? null;
  const m = r.machine;
  const out: string[] = [
    `# sluice bench, ${r.date} on ${m.hostname}${r.quick ? ' (quick smoke run: not a measurement)' : ''}`,
    '',
    `- command: \`${r.command}\``,
    `- machine: ${m.cpu}, ${m.cores} cores, ${m.kernel}; node ${m.node}; nginx ${m.nginx}; load: ${r.load_tool}; load average at start ${m.loadavg_at_start.join(' ')}`,
    `- pinning: ${r.pinning}; ${r.priority}`,
    `- schedule: ${r.schedule.connections} keep-alive connections; each target warmed up ${r.schedule.warmup_seconds} s, then ${r.schedule.rounds} round(s) x ${r.schedule.seconds} s with targets alternated; figures are medians over rounds, ratios the median of per-round ratios (each sluice row against an nginx measurement made next to it); a measurement during which other processes used over 15% of a core is repeated (${r.measurements_repeated} repeated, ${r.measurements_disturbed} kept disturbed); wall time ${Math.round(r.seconds_elapsed)} s`,
    '',
    '## Headline',
    '',
    `| figure | value | target |`,
    `|---|---:|---|`,
    `| sluice_vs_nginx_rps | ${ratio(r.sluice_vs_nginx_rps)}${verdict(r.sluice_vs_nginx_rps, (v) => v >= 0.9)} | >= 0.9x (aim 1.0x) |`,
    `| sluice_policies_vs_nginx_rps | ${ratio(r.sluice_policies_vs_nginx_rps)}${verdict(r.sluice_policies_vs_nginx_rps, (v) => v >= 0.85)} | >= 0.85x |`,
    `| sluice_traced_vs_policies_rps (policies on, 100% of requests traced and exported over OTLP, vs the same untraced) | ${ratio(r.sluice_traced_vs_policies_rps)} | |`,
    `| sluice_vs_nginx_rps_with_xff (both append X-Forwarded-For) | ${ratio(r.sluice_vs_nginx_rps_with_xff)} | |`,
    `| sluice_vs_nginx_sse | ${ratio(r.sluice_vs_nginx_sse)} | |`,
    `| sluice_vs_nginx_ai_defaults (POST chat, sluice as shipped vs nginx with a buffered JSON access log) | ${ratio(r.sluice_vs_nginx_ai_defaults)}${verdict(r.sluice_vs_nginx_ai_defaults, (v) => v >= 0.9)} | >= 0.9x |`,
    `| sluice_vs_nginx_ai_nolog (both access logs off) | ${ratio(r.sluice_vs_nginx_ai_nolog)}${verdict(r.sluice_vs_nginx_ai_nolog, (v) => v >= 0.95)} | >= 0.95x |`,
    `| sluice_vs_nginx_ai_sse (50 tokens, logs on) | ${ratio(r.sluice_vs_nginx_ai_sse)}${verdict(r.sluice_vs_nginx_ai_sse, (v) => v >= 1)} | >= 1.0x |`,
    `| sluice_root_vs_path_ai (POST /v1/chat/completions at the root, routed by the body's model, vs /up-1/v1/...) | ${ratio(r.sluice_root_vs_path_ai)}${verdict(r.sluice_root_vs_path_ai, (v) => v >= 0.95)} | >= 0.95x |`,
    `| uws_floor_vs_nginx_ai (the least a uWS.js proxy does for the AI request, vs nginx, logs off: the ceiling of sluice's HTTP layer) | ${ratio(r.uws_floor_vs_nginx_ai)} | |`,
    `| raw_floor_vs_nginx_ai (the same least work on Node's own TCP handles instead of uWS.js: what another front end could reach) | ${ratio(r.raw_floor_vs_nginx_ai)} | |`,
    `| node_vs_uws_front_end_ai (sluice as shipped, its node front end vs listen.front_end: uws, same run) | ${ratio(r.node_vs_uws_front_end_ai)} | |`,
    `| sluice_vs_portkey_ai | ${ratio(r.sluice_vs_portkey_ai)}${verdict(r.sluice_vs_portkey_ai, (v) => v >= 50)} | >= 50x |`,
    `| sluice_vs_litellm_ai | ${ratio(r.sluice_vs_litellm_ai)}${verdict(r.sluice_vs_litellm_ai, (v) => v >= 200)} | >= 200x |`,
    `| sluice_vs_nginx_cpu_per_req (GET; above 1 = sluice spends more CPU) | ${ratio(r.sluice_vs_nginx_cpu_per_req)} | |`,
    `| sluice_vs_nginx_cpu_per_stream (SSE) | ${ratio(r.sluice_vs_nginx_cpu_per_stream)} | |`,
    `| overhead_mean_us (sluice - direct) | ${signed(r.overhead_mean_us)} | |`,
    `| overhead_p99_us (sluice - direct) | ${signed(r.overhead_p99_us)}${verdict(r.overhead_p99_us, (v) => v < 1000)} | < 1000 |`,
    `| nginx overhead mean / p99 us | ${signed(r.nginx_overhead_mean_us)} / ${signed(r.nginx_overhead_p99_us)} | reference |`,
    `| sluice_vs_nginx_p99_overhead (GET, open loop) | ${ratio(r.sluice_vs_nginx_p99_overhead)}${verdict(r.sluice_vs_nginx_p99_overhead, (v) => v <= 1.5)} | <= 1.5x |`,
    `| AI request p99 overhead us: sluice as shipped / nginx with its log | ${signed(r.ai_overhead_p99_us)} / ${signed(r.nginx_ai_overhead_p99_us)} | |`,
    `| sluice_vs_nginx_ai_p99_overhead (AI request, open loop, logs on) | ${ratio(r.sluice_vs_nginx_ai_p99_overhead)}${verdict(r.sluice_vs_nginx_ai_p99_overhead, (v) => v <= 1.5)} | <= 1.5x |`,
    `| sluice_cache_hit_vs_nginx_cache_hit_rps | ${ratio(r.sluice_cache_hit_vs_nginx_cache_hit_rps)} | |`,
    `| sluice_cache_hit_vs_sluice_forward_rps | ${ratio(r.sluice_cache_hit_vs_sluice_forward_rps)} | |`,
    `| strategies_vs_least_outstanding_rps (lowest, two replicas each) | ${lowestStrategy(r.strategies?.rows ?? null)} | |`,
    `| sluice_vs_nginx_tls (GET over TLS 1.3, TLS_AES_128_GCM_SHA256) | ${ratio(r.sluice_vs_nginx_tls)}${verdict(r.sluice_vs_nginx_tls, (v) => v >= 0.9)} | >= 0.9x |`,
    `| sluice_vs_nginx_tls12 (GET over TLS 1.2, ECDHE-RSA-AES128-GCM-SHA256) | ${ratio(r.sluice_vs_nginx_tls12)} | |`,
    `| chunk overhead p99 us (sluice - direct, streamed chunks) | ${signed(chunkOverhead)}${verdict(chunkOverhead, (v) => v < 1000)} | < 1000 |`,
    `| idle streams: sluice RSS at 10,000 SSE streams, MiB | ${r.idle_streams === null ? '—' : `${fmt(r.idle_streams.rss_at_10k_estimate_mib)}${verdict(r.idle_streams.rss_at_10k_estimate_mib, (v) => v < 1024)}`} | < 1024 |`,
    '',
  ];
  if (r.throughput !== null) {
    out.push('## Proxy throughput (GET, 23-byte JSON body, closed loop)', '', ...loadTable(r.throughput, 'req/s', false), '');
  }
  if (r.ai !== null) {
    out.push('## The AI request (POST /v1/chat/completions, ~500-byte body, OpenAI SDK headers and Bearer credential, ~300-byte answer; closed loop)', '',
      '(vs nginx: each sluice row against the nginx row with the same logging, measured next to it; nginx with its log, and the peers, against nginx without a log)', '',
      ...loadTable(r.ai.rows, 'req/s', false), '');
    out.push(`## The AI request streamed (SSE, 50 tokens from the simulator, no delays; one request = one stream)`, '', ...loadTable(r.ai.sse, 'streams/s', true), '');
    for (const p of r.ai.peers) out.push(`- ${p}`);
    if (r.ai.peers.length > 0) out.push('');
  }
  if (r.clients !== null) {
    out.push('## Upstream clients (minimal uWS proxies, same load and pinning; vs nginx of the same rotation)', '', ...loadTable(r.clients, 'req/s', false), '');
  }
  if (r.strategies !== null) out.push(...strategyTable(r.strategies));
  if (r.tls !== null) {
    out.push('## TLS (the GET above over HTTPS: same self-signed RSA-2048 certificate, keep-alive, one protocol and suite per row, offered by the client)', '',
      '(vs nginx: each sluice row against nginx\'s of the same protocol, measured next to it; nginx\'s TLS 1.2 row against its TLS 1.3 one)', '',
      ...loadTable(r.tls, 'req/s', false), '');
  }
  if (r.sse !== null) {
    out.push('## Streaming (SSE from the simulator: 20 tokens, no delays; one request = one complete stream)', '', ...loadTable(r.sse, 'streams/s', true), '');
    for (const c of r.sse_checks ?? []) {
      out.push(`- complete-stream check through ${c.target}: ${c.complete}/${c.checked} streams ended with \`data: [DONE]\` and carried all ${c.data_events_per_stream} data events${c.failures.length > 0 ? `; first failures: ${c.failures.slice(0, 3).join('; ')}` : ''}`);
    }
    out.push('');
  }
  if (r.cache !== null) {
    const c = r.cache_counters;
    out.push('## Response cache (POST /invocations, 32-byte JSON body; forwarded, and answered from each proxy\'s cache)', '',
      '`vs nginx`: the forwarded rows against nginx forwarding, the cache-hit rows against nginx\'s proxy_cache hit.', '',
      ...loadTable(r.cache, 'req/s', false), '',
      c === null ? '' : `- sluice (policies on) cache counters after the run: ${fmt(c.hits)} hits, ${fmt(c.misses)} misses`, '');
  }
  if (r.latency !== null) {
    const l = r.latency;
    out.push(
      `## Added latency (open loop: ${fmt(l.rate)} req/s on a fixed timetable, ${l.connections} connections, ${l.seconds} s x ${l.rounds} round(s); latency from the scheduled send time)`,
      '',
      l.fraction_of_sluice_max === null ? '' : `Offered load = ${Math.round(l.fraction_of_sluice_max * 100)}% of sluice's closed-loop maximum measured above.`,
      '',
      'Latency columns are medians over rounds; overheads are the median of per-round differences with the direct run of the same round (each round in brackets).',
      '',
      '| target | achieved req/s | mean us | p50 us | p90 us | p99 us | p99.9 us | max us | overhead mean us | overhead p99 us | errors | send lag p99 us |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...l.rows.map((x) => `| ${x.label} | ${fmt(x.achieved_rps)} | ${fmt(x.latency_us.mean)} | ${fmt(x.latency_us.p50)} | ${fmt(x.latency_us.p90)} | ${fmt(x.latency_us.p99)} | ${fmt(x.latency_us.p999)} | ${fmt(x.latency_us.max)} | ${signed(x.overhead_mean_us)} | ${signed(x.overhead_p99_us)}${x.overhead_p99_us_by_round.length > 1 ? ` (${x.overhead_p99_us_by_round.map(signed).join(', ')})` : ''} | ${x.errors + x.non2xx + x.unanswered} | ${fmt(x.send_lag_us.p99)} |`),
      '',
    );
  }
  if (r.chunk_latency !== null) {
    const c = r.chunk_latency;
    out.push(
      `## Chunk latency (${fmt(c.streams)} concurrent SSE streams, one stamped chunk every ${c.chunk_ms} ms each; ${c.rounds} round(s) x ${c.seconds} s)`,
      '',
      'From the upstream\'s write to the client\'s read, on the machine\'s monotonic clock; medians over rounds; overheads paired by round with the direct run.',
      '',
      '| target | chunks | p50 us | p99 us | p99.9 us | max us | overhead p50 us | overhead p99 us |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...c.rows.map((x) => `| ${x.label} | ${fmt(x.chunks)} | ${fmt(x.p50_us)} | ${fmt(x.p99_us)} | ${fmt(x.p999_us)} | ${fmt(x.max_us)} | ${signed(x.overhead_p50_us)} | ${signed(x.overhead_p99_us)} |`),
      '',
    );
  }
  if (r.idle_streams !== null) {
    const i = r.idle_streams;
    out.push(
      `## Idle streams (${fmt(i.streams)} concurrent SSE streams through sluice, one token a second each)`,
      '',
      '| figure | value |',
      '|---|---:|',
      `| streams started (first event received) / errors | ${fmt(i.started)} / ${fmt(i.errors)} |`,
      `| seconds to open them all | ${i.open_seconds} |`,
      `| generations in flight at the simulator | ${fmt(i.upstream_active)} |`,
      `| sluice RSS before / with the streams open, MiB | ${i.rss_before_mib} / ${i.rss_open_mib} |`,
      `| per stream, KiB | ${i.kib_per_stream} |`,
      `| RSS for 10,000 streams (measured, or extrapolated from the per-stream figure; target < 1024), MiB | ${fmt(i.rss_at_10k_estimate_mib)}${verdict(i.rss_at_10k_estimate_mib, (v) => v < 1024)} |`,
      `| generations cancelled at the simulator after every client left / seconds until none was left | ${fmt(i.upstream_cancelled)} / ${i.cancel_seconds} |`,
      '',
    );
  }
  out.push(`sluice: uWS native binding ${r.sluice.uws_native === null ? 'unknown' : r.sluice.uws_native ? 'in use' : 'NOT in use'}; responses by status ${JSON.stringify(r.sluice.requests_by_code)}; upstream errors ${r.sluice.upstream_errors}.`, '');
  if (r.warnings.length > 0) out.push('## Warnings', '', ...r.warnings.map((w) => `- ${w}`), '');
  return out.join('\n');
}
