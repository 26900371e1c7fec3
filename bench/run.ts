// `npm run bench [-- flags]`: sluice against nginx on the same machine, in the same run.
// See bench/README.md for what each figure means. Flags:
//   --json        print exactly one JSON object on stdout (progress goes to stderr; the
//                 project's .npmrc keeps npm's "> sluice@..." banner off stdout)
//   --quick       smoke run: 1 round x 2 s, 1 s warm-up (results file gets a -quick suffix)
//   --clients     only the upstream-client comparison (with nginx and sluice as references)
//   --only LIST   comma list of sections: throughput,ai,clients,sse,latency,cache,strategies,streams,chunks,tls
//   --profile     CPU-profile sluice under the GET and SSE loads and summarise self time
//   --rate N      open-loop offered rate (default 5000 req/s); --rate=half: half of sluice's
//                 closed-loop maximum measured in this run (DESIGN.md's "50% of max load")
//   --nice=N      scheduling priority of the bench and its children (default -10; 0 leaves it)
//   --no-peers    the AI section without Portkey and LiteLLM (installed into bench/.peers/
//                 on first use: npm, and a Python venv from PyPI)

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ForeignCpu } from './lib/cpu.js';
import { Guard } from './lib/guard.js';
import { LoadGenerator, type LoadSpec } from './lib/load.js';
import { log, sleep } from './lib/log.js';
import { measureChunkLatency, type ChunkLatency } from './lib/chunk-latency.js';
import { openFileLimit, openStreams, rssMiB } from './lib/idle-streams.js';
import { AI_BODY, AI_HEADERS, AI_PATH, AI_ROOT_BODY, AI_SSE_BODY, CHAT_COMPLETION } from './lib/ai-request.js';
import { selfSignedCertificate, type Certificate } from './lib/certificate.js';
import { proxyConf, startNginx, upstreamConf, UPSTREAM_METRICS_PATH } from './lib/nginx.js';
import { installPeers, litellmHeaders, LITELLM_VERSION, portkeyHeaders, PORTKEY_VERSION, startLitellm, startPortkey } from './lib/peers.js';
import { onInterrupt, portOpen, ProcessGroup, type Proc } from './lib/procs.js';
import { costlyStrategies, renderMarkdown, type ChunkLatencyRow, type IdleStreams, type LatencyRow, type LoadRow, type Results, type StrategyRow, type StreamCheck } from './lib/report.js';
import { rotate, type Cores, type Measured, type Round, type Schedule, type Target } from './lib/rotation.js';
import { describeMachine, ensureTools, planPinning, raisePriority, type Machine, type Pinning, type Tools } from './lib/setup.js';
import { median, round } from './lib/stats.js';
import { startNginxTls, tlsTargets } from './lib/tls.js';
import type { OpenLoopResult } from './open-loop.js';
import { busiestProfile, renderProfile, summariseProfile } from './profile.js';
import { startRawFrontEnd } from './raw-front-end.js';
import { CLIENT_LABELS, startClientProxies } from './upstream-clients.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_DIR = join(ROOT, 'dist-bench');
/** The Node flags sluice runs with, as `sluice node-flags` prints them (src/node-flags.ts). */
const SLUICE_NODE_FLAGS: readonly string[] = spawnSync(process.execPath, [join(ROOT, 'dist/cli.js'), 'node-flags'], { encoding: 'utf8' }).stdout.trim().split(/\s+/).filter((f) => f !== '');

const PORT = {
  upstream: 29011,
  sim: 29012,
  simSlow: 29013,
  stamp: 29014,
  // The same upstream nginx on a second port: the second replica of the strategies section.
  upstreamB: 29015,
  nginx: 29020,
  clients: 29031,
  sluice: 29080,
  admin: 29081,
  sluicePolicies: 29082,
  adminPolicies: 29083,
  sluiceXff: 29084,
  adminXff: 29085,
  sluiceStrategies: 29086,
  adminStrategies: 29087,
  // The AI section: sluice as shipped (default config), the same with its access log off,
  // the 50-token simulator and the peers a user might pick instead of sluice.
  sluiceDefaults: 29088,
  adminDefaults: 29089,
  sluiceDefaultsNoLog: 29078,
  adminDefaultsNoLog: 29079,
  // sluice as shipped but reading requests with uWS (listen.front_end: uws), as before the node front end.
  sluiceDefaultsUws: 29074,
  adminDefaultsUws: 29075,
  // The AI section's uWS floor: the minimal POST forwarder of upstream-clients.ts.
  uwsFloor: 29034,
  // The AI section's raw floor: the same on Node's TCP handles (raw-front-end.ts).
  rawFloor: 29035,
  portkey: 29076,
  litellm: 29077,
  sim50: 29016,
  // The TLS section: nginx and sluice (policies off) over HTTPS.
  nginxTls: 29021,
  sluiceTls: 29090,
  adminTls: 29091,
  // The throughput section's traced instance (policies on, every request traced) and the
  // OTLP receiver it exports to.
  sluiceTraced: 29092,
  adminTraced: 29093,
  otlpSink: 29094,
} as const;

// Every policy that runs on a plain request, at limits the load never reaches, so that the
// row prices the checks themselves: breaker admission and outcome, retry budget, in-flight
// CAS under max_inflight, a shared rate-limit bucket, the cache's candidate check, the
// total-timeout sweep. API keys are left out: wrk would have to send one. The cache section
// sends its hits here; entries live 10 minutes, as nginx's proxy_cache_valid there.
const POLICIES_ON = '{ breaker: { enabled: true }, retry: { attempts: 2 }, queue: { max_inflight_per_replica: 100000, max_length: 1000 }, rate_limit: { requests_per_second: 1000000000 }, cache: { enabled: true, ttl_ms: 600000 }, total_timeout_ms: 60000 }';
// The plain row: the data plane with every policy off.
const POLICIES_OFF = '{ breaker: { enabled: false }, retry: { attempts: 0 }, cache: { enabled: false } }';

/**
 * The sluice instances: `plain` (every policy off), `policies` (every policy on), and
 * `xff` (policies off, `listen.forwarded_for: true`): the forwarding path with the
 * client-address lookup, against an nginx location that sets X-Forwarded-For too.
 * `strategies` (policies off) has one deployment per balancing strategy instead of the
 * others' deployments (see strategyDeployments). `traced` is `policies` with tracing on at
 * 100% sampling, exporting to bench/otlp-sink.ts: what tracing costs when every request is
 * recorded (with tracing off, the `policies` row is its price: a null check per request).
 */
type SluiceVariant = 'plain' | 'policies' | 'xff' | 'strategies' | 'defaults' | 'defaults-nolog' | 'defaults-uws' | 'tls' | 'traced';
const SLUICE_PORTS: Record<SluiceVariant, { port: number; admin: number }> = {
  plain: { port: PORT.sluice, admin: PORT.admin },
  policies: { port: PORT.sluicePolicies, admin: PORT.adminPolicies },
  xff: { port: PORT.sluiceXff, admin: PORT.adminXff },
  strategies: { port: PORT.sluiceStrategies, admin: PORT.adminStrategies },
  defaults: { port: PORT.sluiceDefaults, admin: PORT.adminDefaults },
  'defaults-nolog': { port: PORT.sluiceDefaultsNoLog, admin: PORT.adminDefaultsNoLog },
  'defaults-uws': { port: PORT.sluiceDefaultsUws, admin: PORT.adminDefaultsUws },
  tls: { port: PORT.sluiceTls, admin: PORT.adminTls },
  traced: { port: PORT.sluiceTraced, admin: PORT.adminTraced },
};

/**
 * What a variant's config sets beyond where it listens: `defaults` is sluice as shipped (log
 * level info, a JSON access line per request, default policies); `defaults-nolog` the same
 * with `log.access: false`; `defaults-uws` the same with uWS reading the requests (its
 * listen line); the others log warnings only and set their policies.
 */
function variantSettings(variant: SluiceVariant): string {
  if (variant === 'defaults' || variant === 'defaults-uws') return '';
  if (variant === 'defaults-nolog') return 'log: { access: false }\n';
  const tracing = variant === 'traced' ? `tracing: { enabled: true, sample_ratio: 1, endpoint: "http://127.0.0.1:${PORT.otlpSink}/v1/traces" }\n` : '';
  return `log: { level: warn, access: false }\npolicies: ${variant === 'policies' || variant === 'traced' ? POLICIES_ON : POLICIES_OFF}\n${tracing}`;
}

/** One deployment of the strategies instance: `<model>-1`, balanced by `strategy`. */
interface StrategyDeployment {
  readonly model: string;
  readonly strategy: string;
  readonly replicas: number;
  /** The deployment's `urls`, YAML flow style. */
  readonly urls: string;
  /** Its `policies` override, YAML flow style; absent: the instance's (the default strategy). */
  readonly policies?: string;
}

/**
 * Every strategy over the same two replicas (the upstream's two ports, so two connection
 * pools, shared by every deployment). `lo-1` names no strategy at all: it is the default
 * path every other row is divided by. weighted draws 3:1; lowest_cost puts both replicas in
 * one price tier (the least-loaded scan inside a tier), failover one in each (the primary
 * takes everything); queue_aware scrapes the upstream's static vLLM page, so its pick reads
 * reported figures. `single-1`, least_outstanding over one replica, shows what choosing
 * between two costs at all.
 */
function strategyDeployments(): StrategyDeployment[] {
  const a = `http://127.0.0.1:${PORT.upstream}`;
  const b = `http://127.0.0.1:${PORT.upstreamB}`;
  const two = `["${a}", "${b}"]`;
  const balancer = (strategy: string, extra = ''): string => `{ balancer: { strategy: ${strategy}${extra} } }`;
  return [
    { model: 'lo', strategy: 'least_outstanding', replicas: 2, urls: two },
    { model: 'rr', strategy: 'round_robin', replicas: 2, urls: two, policies: balancer('round_robin') },
    { model: 'wt', strategy: 'weighted', replicas: 2, urls: `[{ url: "${a}", weight: 3 }, { url: "${b}", weight: 1 }]`, policies: balancer('weighted') },
    { model: 'll', strategy: 'lowest_latency', replicas: 2, urls: two, policies: balancer('lowest_latency') },
    { model: 'lc', strategy: 'lowest_cost', replicas: 2, urls: `[{ url: "${a}", cost: 1 }, { url: "${b}", cost: 1 }]`, policies: balancer('lowest_cost') },
    { model: 'fo', strategy: 'failover', replicas: 2, urls: `[{ url: "${a}", priority: 0 }, { url: "${b}", priority: 1 }]`, policies: balancer('failover') },
    { model: 'qa', strategy: 'queue_aware', replicas: 2, urls: two, policies: balancer('queue_aware', `, metrics_path: ${UPSTREAM_METRICS_PATH}`) },
    { model: 'single', strategy: 'least_outstanding', replicas: 1, urls: `["${a}"]` },
  ];
}

/**
 * The deployments of an instance, YAML lines: one per upstream of this run (`running`:
 * the upstreams started). A deployment whose upstream is not running would fail its health
 * checks, and each change of its health republishes the route table, a stall of the data
 * plane that the latency section would then measure.
 */
function deploymentsOf(variant: SluiceVariant, running: ReadonlySet<number>): string {
  if (variant === 'strategies') {
    return strategyDeployments().map((d) => `  - { model: ${d.model}, version: "1", runtime: remote, urls: ${d.urls}${d.policies === undefined ? '' : `, policies: ${d.policies}`} }\n`).join('');
  }
  const all: Array<[number, string]> = [
    [PORT.upstream, 'model: up'],
    [PORT.sim, 'model: sim'],
    [PORT.simSlow, `model: slow, upstream: { max_connections: ${IDLE_STREAMS * 2} }`],
    [PORT.stamp, `model: stamp, upstream: { max_connections: ${STAMP_STREAMS * 2} }`],
    [PORT.sim50, 'model: sim50'],
  ];
  return all.filter(([port]) => running.has(port))
    .map(([port, fields]) => `  - { ${fields}, version: "1", runtime: remote, urls: ["http://127.0.0.1:${port}"] }\n`).join('');
}

const CONNECTIONS = 64;
const JSON_PATH = '/predict';
const CHAT_PATH = '/v1/chat/completions';
const CHAT_BODY = '{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}';
// An MLflow scoring request: /invocations POSTs are cacheable by default.
const INVOKE_PATH = '/invocations';
const INVOKE_BODY = '{"inputs":{"a":[1,2],"b":[3,4]}}';
const SIM_TOKENS = 20;
// The AI section's streamed answer: tokens from the simulator.
const AI_SSE_TOKENS = 50;
// The idle-streams section: DESIGN.md's count, one token a second for a minute (idle, not
// silent: the idle timeout must not end them), and how long opening them all may take.
const IDLE_STREAMS = 10_000;
const SLOW_TOKEN_MS = 1000;
const SLOW_TOKENS = 60;
const IDLE_OPEN_DEADLINE_MS = 60_000;
// The chunk-latency section: 300 streams of one stamped chunk every 50 ms (6,000 chunks/s, say
// 300 generations at 20 tokens/s), 3 rounds of 5 s per target. At 1,000 streams the reader
// and the stamp server saturate the load CPU and the method's p99 floor rises to 1-2 ms.
const STAMP_STREAMS = 300;
const STAMP_CHUNK_MS = 50;
const STAMP_SECONDS = 5;
const STAMP_ROUNDS = 3;
const STREAM_CHECK_COUNT = 200;

type Section = 'throughput' | 'ai' | 'clients' | 'sse' | 'latency' | 'cache' | 'strategies' | 'streams' | 'chunks' | 'tls';
const SECTIONS: readonly Section[] = ['throughput', 'ai', 'clients', 'sse', 'latency', 'cache', 'strategies', 'streams', 'chunks', 'tls'];

interface Options {
  readonly json: boolean;
  readonly quick: boolean;
  readonly profile: boolean;
  readonly sections: ReadonlySet<Section>;
  readonly schedule: Schedule;
  /** The strategies section's: fewer rounds in the full run, which is long enough already. */
  readonly strategySchedule: Schedule;
  /** Open-loop offered rate; 'half' = half of sluice's closed-loop maximum of this run. */
  readonly rate: number | 'half';
  readonly nice: number;
  /** The AI section measures the peer gateways too (Portkey, LiteLLM). */
  readonly peers: boolean;
  readonly latencySeconds: number;
  readonly latencyRounds: number;
  readonly argv: readonly string[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      clients: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      only: { type: 'string' },
      rate: { type: 'string', default: '5000' },
      nice: { type: 'string', default: '-10' },
      'no-peers': { type: 'boolean', default: false },
    },
    strict: true,
  });
  let sections = new Set<Section>(SECTIONS);
  if (values.clients) sections = new Set(['clients']);
  if (values.only !== undefined) {
    sections = new Set(values.only.split(',').map((s) => {
      if (!SECTIONS.includes(s as Section)) throw new Error(`--only: unknown section '${s}' (known: ${SECTIONS.join(', ')})`);
      return s as Section;
    }));
  }
  const quick = values.quick;
  const schedule = quick ? { rounds: 1, seconds: 2, warmupSeconds: 1 } : { rounds: 7, seconds: 2, warmupSeconds: 2 };
  const rate = values.rate === 'half' ? 'half' : Number(values.rate);
  const nice = Number(values.nice);
  if (rate !== 'half' && !(rate > 0)) throw new Error(`--rate must be a positive number or 'half', got '${values.rate}'`);
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new Error(`--nice must be an integer from -20 to 19 (write --nice=-5), got '${values.nice}'`);
  return {
    json: values.json,
    quick,
    profile: values.profile,
    sections,
    // Many short rounds rather than a few long ones: this class of machine drifts by 20-30%
    // over tens of seconds, and a round that visits every target within a few seconds of each
    // other compares them under the same conditions (see rowsOf).
    schedule,
    // Seven pairs a round (every strategy next to least_outstanding) take 28 s: 7 rounds would
    // add 3.5 minutes to the full run. There it gets 2 (one pair order each, so position
    // cancels); `--only strategies` gets the full schedule.
    strategySchedule: sections.size === SECTIONS.length && !quick ? { ...schedule, rounds: 2 } : schedule,
    rate,
    nice,
    peers: !values['no-peers'],
    latencySeconds: quick ? 2 : 5,
    latencyRounds: quick ? 1 : 3,
    argv,
  };
}

function commandLine(argv: readonly string[]): string {
  const args = argv.join(' ');
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${args === '' ? '' : ` -- ${args}`}`;
  return `node dist-bench/run.js${args === '' ? '' : ` ${args}`}`;
}

/** The processes of one run; each is started only when a section needs it. */
class Fleet {
  readonly group: ProcessGroup;
  readonly tools: Tools;
  readonly pinning: Pinning;
  readonly machine: Machine;
  readonly priority: string;
  uwsNative: boolean | null = null;
  /** Ports of the upstreams started so far: sluice gets a deployment for each (deploymentsOf). */
  readonly running = new Set<number>();
  #certificate: Certificate | null = null;

  constructor(group: ProcessGroup, tools: Tools, pinning: Pinning, priority: string) {
    this.group = group;
    this.priority = priority;
    this.tools = tools;
    this.pinning = pinning;
    this.machine = describeMachine(tools);
  }

  async checkPortsFree(ports: readonly number[]): Promise<void> {
    for (const p of ports) {
      if (await portOpen(p)) throw new Error(`port ${p} is already in use (a leftover bench process, or another service): free it and retry`);
    }
  }

  /** `second`: also listen on PORT.upstreamB (the strategies section's second replica). */
  upstream(second = false): Promise<Proc> {
    const ports = second ? [PORT.upstream, PORT.upstreamB] : [PORT.upstream];
    this.running.add(PORT.upstream);
    return startNginx(this.group, this.tools.nginx, 'nginx-upstream', PORT.upstream, (p) => upstreamConf(p, ports), this.pinning.rest);
  }

  sim(): Promise<Proc> {
    return this.#startSim('sim', PORT.sim, 0, SIM_TOKENS);
  }

  /** A simulator whose streams last a minute: the upstream of the idle-streams section. */
  slowSim(): Promise<Proc> {
    return this.#startSim('sim-slow', PORT.simSlow, SLOW_TOKEN_MS, SLOW_TOKENS);
  }

  /** The AI section's streamed answer: AI_SSE_TOKENS tokens, no delays. */
  sim50(): Promise<Proc> {
    return this.#startSim('sim50', PORT.sim50, 0, AI_SSE_TOKENS);
  }

  /** An OpenAI-protocol simulator on the load CPUs, first token at once. */
  #startSim(name: string, port: number, tokenMs: number, tokens: number): Promise<Proc> {
    this.running.add(port);
    return this.group.start({
      name,
      command: process.execPath,
      args: [join(ROOT, 'dist/cli.js'), 'sim', '--port', String(port), '--protocol', 'openai', '--ttft-ms', '0', '--token-ms', String(tokenMs), '--tokens', String(tokens)],
      cpus: this.pinning.rest,
    }, { line: /"event":"listening"/ });
  }

  /** The traced instance's OTLP receiver (bench/otlp-sink.ts), on the load CPUs. */
  otlpSink(): Promise<Proc> {
    return this.group.start({
      name: 'otlp-sink',
      command: process.execPath,
      args: [join(BENCH_DIR, 'otlp-sink.js'), '--port', String(PORT.otlpSink)],
      cpus: this.pinning.rest,
    }, { line: /"event":"listening"/ });
  }

  /** The stamped SSE upstream of the chunk-latency section (bench/stamp-server.ts). */
  stampServer(): Promise<Proc> {
    this.running.add(PORT.stamp);
    return this.group.start({
      name: 'stamp-server',
      command: process.execPath,
      args: [join(BENCH_DIR, 'stamp-server.js'), '--port', String(PORT.stamp), '--chunk-ms', String(STAMP_CHUNK_MS)],
      cpus: this.pinning.rest,
    }, { line: /"event":"listening"/ });
  }

  nginxProxy(): Promise<Proc> {
    return startNginx(this.group, this.tools.nginx, 'nginx-proxy', PORT.nginx,
      (p) => proxyConf(p, PORT.nginx, [
        { prefix: 'up-1', port: PORT.upstream }, { prefix: 'up-cache', port: PORT.upstream, cache: true },
        { prefix: 'up-xff', port: PORT.upstream, forwardedFor: true }, { prefix: 'sim-1', port: PORT.sim },
        { prefix: 'stamp-1', port: PORT.stamp },
        // The AI section's: the same upstreams with a JSON access line per request, buffered.
        { prefix: 'up-log', port: PORT.upstream, accessLog: true }, { prefix: 'sim50-1', port: PORT.sim50 },
        { prefix: 'sim50-log', port: PORT.sim50, accessLog: true },
      ]), this.pinning.proxy);
  }

  /** The self-signed certificate nginx and sluice both serve in the TLS section. */
  get certificate(): Certificate {
    return this.#certificate ??= selfSignedCertificate(this.group.dir, 'bench-tls');
  }

  /** sluice with one worker; `nodeArgs` lets the profiler in. */
  async startSluice(nodeArgs: readonly string[] = [], variant: SluiceVariant = 'plain'): Promise<Proc> {
    const { port, admin } = SLUICE_PORTS[variant];
    const config = join(this.group.dir, `sluice-${variant}.yaml`);
    const tls = variant === 'tls' ? `, tls: { cert_file: ${this.certificate.certFile}, key_file: ${this.certificate.keyFile} }` : '';
    const frontEnd = variant === 'defaults-uws' ? ', front_end: uws' : '';
    writeFileSync(config, `listen: { host: 127.0.0.1, port: ${port}, forwarded_for: ${variant === 'xff'}${tls}${frontEnd} }
admin: { port: ${admin} }
workers: 1
state_dir: ${join(this.group.dir, `state-${variant}`)}
shutdown: { drain_delay_ms: 0 }
${variantSettings(variant)}deployments:
${deploymentsOf(variant, this.running)}`);
    const proc = await this.group.start({
      name: variant === 'plain' ? 'sluice' : `sluice-${variant}`,
      command: process.execPath,
      // With the Node flags sluice is run with (`sluice node-flags`, as npm start passes them).
      args: [...SLUICE_NODE_FLAGS, ...nodeArgs, join(ROOT, 'dist/cli.js'), 'serve', '--config', config],
      cpus: this.pinning.proxy,
      cwd: this.group.dir,
      // Its access log goes to a file, as nginx's does (and the bench never reads it).
      ...(variant === 'defaults' ? { stdoutFile: join(this.group.dir, 'sluice-defaults-access.log') } : {}),
    }, { url: `http://127.0.0.1:${admin}/readyz`, port, timeoutMs: 30_000 });
    const health = (await (await fetch(`http://127.0.0.1:${admin}/healthz`)).json()) as { uws_native?: boolean };
    this.uwsNative = health.uws_native ?? null;
    if (this.uwsNative !== true) log('WARNING: sluice does not report the native uWS binding: its figures are not meaningful');
    return proc;
  }

  async sluiceMetrics(admin: number = PORT.admin): Promise<{ requests_by_code: Record<string, number>; upstream_errors: number }> {
    const text = await scrape(admin);
    const byCode: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const req = /^sluice_requests_total\{[^}]*code="(\d+)"[^}]*\} (\S+)/.exec(line);
      if (req !== null) byCode[req[1]!] = (byCode[req[1]!] ?? 0) + Number(req[2]);
    }
    return { requests_by_code: byCode, upstream_errors: metricSum(text, 'sluice_upstream_errors_total') };
  }
}

const scrape = async (admin: number): Promise<string> => (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();

/** A counter summed over all its label sets (deployments, codes, tiers). */
function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

const url = (port: number, path: string): string => `http://127.0.0.1:${port}${path}`;
const postSpec = (port: number, path: string, body: string): Omit<LoadSpec, 'seconds'> =>
  ({ url: url(port, path), connections: CONNECTIONS, method: 'POST', body });
const chatSpec = (port: number, prefix: string): Omit<LoadSpec, 'seconds'> => postSpec(port, `${prefix}${CHAT_PATH}`, CHAT_BODY);

/**
 * `reference`: the target whose req/s each row's vs_nginx divides by. vs_nginx is the median
 * of the per-round ratios, each against the reference measured next to it (a target paired
 * with it) or else its first measurement of the same round: the machine's drift between
 * rounds cancels out of each ratio. A paired target that is also another's reference (sluice
 * as shipped, the reference of its uWS and root variants) is measured more than once a
 * round; only its measurements next to its own reference count: the others have no such
 * neighbour, and dividing them by `reference` instead (nginx without log) once outvoted
 * its pairs with nginx with log.
 */
function rowsOf(targets: readonly Target[], measured: Map<string, Measured>, reference = 'nginx'): LoadRow[] {
  const nginx = measured.get(reference);
  const pairedRatio = (m: Measured): number => {
    if (m === nginx) return 1;
    const paired = m.rounds.filter((x) => x.reference_rps !== null);
    return median((paired.length > 0 ? paired : m.rounds).map((x) => x.rps / (x.reference_rps ?? nginx!.rounds.find((n) => n.round === x.round)!.rps)));
  };
  return targets.map((t) => {
    const m = measured.get(t.key)!;
    return {
      key: t.key,
      label: t.label,
      rps: m.rps,
      p50_ms: m.p50_ms,
      p99_ms: m.p99_ms,
      bytes_per_s: m.bytes_per_s,
      errors: m.errors,
      non2xx: m.non2xx,
      proxy_process_cpu_pct: round(m.proxy_process_cpu_pct),
      proxy_core_busy_pct: round(m.proxy_core_busy_pct),
      load_core_busy_pct: round(m.load_core_busy_pct),
      proxy_cpu_us_per_req: round(m.proxy_cpu_us_per_req, 2),
      foreign_cpu_pct: round(m.foreign_cpu_pct),
      disturbed_rounds: m.disturbed_rounds,
      vs_nginx: nginx === undefined ? null : round(pairedRatio(m), 3),
      rounds_rps: m.rounds.map((x) => round(x.rps)),
    };
  });
}

/** Reads `n` streams (32 at a time) and checks each one is whole. */
async function checkStreams(target: string, endpoint: string, n: number, expectedEvents: number): Promise<StreamCheck> {
  let complete = 0;
  const failures: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      try {
        const res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: CHAT_BODY });
        const body = await res.text();
        const events = countDataEvents(body);
        if (res.status === 200 && body.trimEnd().endsWith('data: [DONE]') && events === expectedEvents) complete++;
        else failures.push(`status ${res.status}, ${events} data events, ends ${JSON.stringify(body.slice(-30))}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return { target, checked: n, complete, data_events_per_stream: expectedEvents, failures };
}

function countDataEvents(body: string): number {
  return body.split('\n').filter((l) => l.startsWith('data: ')).length;
}

async function runOpenLoop(fleet: Fleet, target: string, seconds: number, rate: number, ai: boolean): Promise<OpenLoopResult> {
  const out = await fleet.group.run({
    name: 'open-loop',
    command: process.execPath,
    args: [join(BENCH_DIR, 'open-loop.js'), '--url', target, '--rate', String(rate), '--seconds', String(seconds), '--warmup', '1', '--connections', String(CONNECTIONS), ...(ai ? ['--ai'] : [])],
    cpus: fleet.pinning.rest,
  }, (seconds + 20) * 1000);
  return JSON.parse(out.trim().split('\n').pop()!) as OpenLoopResult;
}

/** The median of each latency figure over rounds (rounds alternate targets, as elsewhere). */
function medianOpenLoop(rs: readonly OpenLoopResult[]): OpenLoopResult {
  const med = <K extends 'latency_us' | 'service_us'>(k: K): OpenLoopResult[K] => {
    const first = rs[0]![k];
    return Object.fromEntries(Object.keys(first).map((f) => [f, median(rs.map((r) => (r[k] as unknown as Record<string, number>)[f]!))])) as unknown as OpenLoopResult[K];
  };
  return {
    offered_rps: rs[0]!.offered_rps,
    achieved_rps: median(rs.map((r) => r.achieved_rps)),
    measured: rs.reduce((a, r) => a + r.measured, 0),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    unanswered: rs.reduce((a, r) => a + r.unanswered, 0),
    non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
    latency_us: med('latency_us'),
    service_us: med('service_us'),
    send_lag_us: { p50: median(rs.map((r) => r.send_lag_us.p50)), p99: median(rs.map((r) => r.send_lag_us.p99)), max: Math.max(...rs.map((r) => r.send_lag_us.max)) },
    max_queue: Math.max(...rs.map((r) => r.max_queue)),
  };
}

/** What every section needs: the options, the processes, the generator and the guard. */
interface Run {
  readonly opts: Options;
  readonly fleet: Fleet;
  readonly gen: LoadGenerator;
  readonly guard: Guard;
  readonly cores: Cores;
  readonly nginxPgid: number;
  readonly sluicePgid: number;
  readonly sluicePoliciesPgid: number;
  readonly sluiceTracedPgid: number;
  readonly sluiceXffPgid: number;
  readonly sluiceStrategiesPgid: number;
  readonly sluiceDefaultsPgid: number;
  readonly sluiceDefaultsNoLogPgid: number;
  readonly sluiceDefaultsUwsPgid: number;
  readonly warnings: string[];
}

/** Throughput and the client comparison share one rotation, so every ratio to nginx comes from the same rounds. */
async function throughputSection(run: Run): Promise<{ throughput: LoadRow[] | null; clients: LoadRow[] | null }> {
  const want = run.opts.sections;
  const get = (port: number, prefix: string): Omit<LoadSpec, 'seconds'> => ({ url: url(port, `${prefix}${JSON_PATH}`), connections: CONNECTIONS });
  const targets: Target[] = [];
  if (want.has('throughput')) targets.push({ key: 'direct', label: 'upstream direct (nginx return 200)', spec: get(PORT.upstream, '') });
  targets.push({ key: 'nginx', label: 'nginx 1 worker -> upstream', spec: get(PORT.nginx, '/up-1'), pgid: run.nginxPgid });
  targets.push({ key: 'sluice', label: 'sluice 1 worker -> upstream (policies off)', spec: get(PORT.sluice, '/up-1'), pgid: run.sluicePgid, pairedWith: 'nginx' });
  if (want.has('throughput')) targets.push({ key: 'sluice-policies', label: 'sluice 1 worker -> upstream (policies on)', spec: get(PORT.sluicePolicies, '/up-1'), pgid: run.sluicePoliciesPgid, pairedWith: 'nginx' });
  // Tracing at 100% sampling, measured next to the same instance without it (its ratio is against that row).
  if (want.has('throughput')) {
    targets.push({
      key: 'sluice-traced', label: 'sluice 1 worker -> upstream (policies on, every request traced; ratio: vs policies on)',
      spec: get(PORT.sluiceTraced, '/up-1'), pgid: run.sluiceTracedPgid, pairedWith: 'sluice-policies',
    });
  }
  // The same pair with X-Forwarded-For on both sides, each against the other (see SluiceVariant).
  const xff: Target[] = want.has('throughput') ? [
    { key: 'nginx-xff', label: 'nginx 1 worker -> upstream, with X-Forwarded-For', spec: get(PORT.nginx, '/up-xff'), pgid: run.nginxPgid },
    { key: 'sluice-xff', label: 'sluice 1 worker -> upstream (policies off, forwarded_for: true)', spec: get(PORT.sluiceXff, '/up-1'), pgid: run.sluiceXffPgid, pairedWith: 'nginx-xff' },
  ] : [];
  const clientTargets: Target[] = [];
  if (want.has('clients')) {
    const proxies = await startClientProxies(run.fleet.group, run.fleet.pinning.proxy, PORT.upstream, PORT.clients, CONNECTIONS);
    for (const p of proxies) clientTargets.push({ key: p.kind, label: CLIENT_LABELS[p.kind], spec: get(p.port, ''), pgid: p.proc.pid });
  }
  log(`throughput: ${targets.length + xff.length + clientTargets.length} targets, ${run.gen.describe()}, ${CONNECTIONS} connections`);
  const measured = await rotate(run.gen, [...targets, ...xff, ...clientTargets], run.opts.schedule, run.cores, run.guard);
  const main = rowsOf(targets, measured);
  return {
    throughput: want.has('throughput') ? [...main, ...rowsOf(xff, measured, 'nginx-xff')] : null,
    clients: want.has('clients') ? [...main.filter((r) => r.key !== 'direct'), ...rowsOf(clientTargets, measured)] : null,
  };
}

/** The AI request to `port` at `prefix`: the SDK's headers and body, answered in JSON or streamed. */
const aiSpec = (port: number, prefix: string, stream = false, headers: Readonly<Record<string, string>> = {}): Omit<LoadSpec, 'seconds'> =>
  ({ ...postSpec(port, `${prefix}${AI_PATH}`, stream ? AI_SSE_BODY : AI_BODY), headers: { ...AI_HEADERS, ...headers } });

/**
 * The request users send, through sluice as shipped: against nginx with and without its
 * access log, streamed, and against the gateways a user might pick instead (each pinned
 * like the proxies, on the same request to the same upstream).
 */
async function aiSection(run: Run): Promise<{ rows: LoadRow[]; sse: LoadRow[]; peers: readonly string[] }> {
  const floor = (await startClientProxies(run.fleet.group, run.fleet.pinning.proxy, PORT.upstream, PORT.uwsFloor, CONNECTIONS, ['sluice-pool']))[0]!;
  const rawFloor = await startRawFrontEnd(run.fleet.group, run.fleet.pinning.proxy, PORT.upstream, PORT.rawFloor, CONNECTIONS);
  const targets: Target[] = [
    { key: 'direct', label: 'upstream direct (nginx return 200, ~300-byte chat.completion)', spec: aiSpec(PORT.upstream, '') },
    { key: 'nginx', label: 'nginx 1 worker -> upstream, access log off', spec: aiSpec(PORT.nginx, '/up-1'), pgid: run.nginxPgid },
    { key: 'nginx-log', label: 'nginx 1 worker -> upstream, JSON access log (buffer=64k)', spec: aiSpec(PORT.nginx, '/up-log'), pgid: run.nginxPgid },
    { key: 'sluice-defaults', label: 'sluice 1 worker, default config (access log on)', spec: aiSpec(PORT.sluiceDefaults, '/up-1'), pgid: run.sluiceDefaultsPgid, pairedWith: 'nginx-log' },
    { key: 'sluice-nolog', label: 'sluice 1 worker, default config, log.access: false', spec: aiSpec(PORT.sluiceDefaultsNoLog, '/up-1'), pgid: run.sluiceDefaultsNoLogPgid, pairedWith: 'nginx' },
    // The front end's share: the same as shipped, with uWS reading the requests instead.
    { key: 'sluice-uws', label: 'sluice 1 worker, default config, listen.front_end: uws (ratio: vs the node front end)', spec: aiSpec(PORT.sluiceDefaultsUws, '/up-1'), pgid: run.sluiceDefaultsUwsPgid, pairedWith: 'sluice-defaults' },
    // The OpenAI front door: the same request at the root, routed by its body's model; its
    // ratio is against the path route above, measured next to it.
    {
      key: 'sluice-root', label: 'sluice 1 worker, default config, POST /v1/chat/completions at the root (ratio: vs the path route)',
      spec: { ...postSpec(PORT.sluiceDefaults, AI_PATH, AI_ROOT_BODY), headers: AI_HEADERS }, pgid: run.sluiceDefaultsPgid, pairedWith: 'sluice-defaults',
    },
    // What the default policies cost on this request: the same with every policy off.
    { key: 'sluice-off', label: 'sluice 1 worker, every policy off, access log off', spec: aiSpec(PORT.sluice, '/up-1'), pgid: run.sluicePgid, pairedWith: 'nginx' },
    // The least any proxy on uWS.js does for this request (headers and body forwarded with
    // sluice's upstream client, nothing else): the ceiling of the HTTP layer sluice uses.
    { key: 'uws-floor', label: 'uWS + sluice UpstreamPool, headers and body forwarded, nothing else', spec: aiSpec(PORT.uwsFloor, ''), pgid: floor.proc.pid, pairedWith: 'nginx' },
    // The same least work on Node's own TCP handles: what another front end could reach.
    { key: 'raw-floor', label: "Node's TCP handles + sluice UpstreamPool, headers and body forwarded, nothing else", spec: aiSpec(PORT.rawFloor, ''), pgid: rawFloor.pid, pairedWith: 'nginx' },
  ];
  const sseTargets: Target[] = [
    { key: 'nginx-log', label: `nginx 1 worker -> simulator (${AI_SSE_TOKENS} tokens), JSON access log`, spec: aiSpec(PORT.nginx, '/sim50-log', true), pgid: run.nginxPgid },
    { key: 'sluice-defaults', label: `sluice 1 worker, default config -> simulator (${AI_SSE_TOKENS} tokens)`, spec: aiSpec(PORT.sluiceDefaults, '/sim50-1', true), pgid: run.sluiceDefaultsPgid, pairedWith: 'nginx-log' },
  ];
  const peers = run.opts.peers ? await startPeers(run, targets) : ['Portkey and LiteLLM were left out (--no-peers).'];
  log(`ai: ${targets.length} request targets, ${sseTargets.length} stream targets`);
  const measured = await rotate(run.gen, targets, run.opts.schedule, run.cores, run.guard);
  // Each sluice row is paired with the nginx row of the same logging, so its ratio is
  // against that row; nginx-log's own ratio is what nginx's log costs it.
  const rows = rowsOf(targets, measured);
  const sse = rowsOf(sseTargets, await rotate(run.gen, sseTargets, run.opts.schedule, run.cores, run.guard), 'nginx-log');
  return { rows, sse, peers };
}

/**
 * Installs (first time: into bench/.peers/), starts and checks the peer gateways, pinned
 * like the proxies, and adds each one that answers the AI request with the upstream's
 * completion to `targets`. Returns what kept a peer out.
 */
async function startPeers(run: Run, targets: Target[]): Promise<string[]> {
  const group = run.fleet.group;
  const upstream = `http://127.0.0.1:${PORT.upstream}`;
  const installs = await installPeers(group, join(ROOT, 'bench', '.peers'), { portkey: true, litellm: true });
  const missing = [installs.errors.portkey, installs.errors.litellm].filter((e): e is string => e !== undefined);
  const peers: Array<[string, string, number, Readonly<Record<string, string>>, () => Promise<Proc>]> = [];
  if (installs.portkey !== null) {
    peers.push(['portkey', `Portkey gateway ${PORTKEY_VERSION} (Node) -> upstream`, PORT.portkey, portkeyHeaders(upstream),
      () => startPortkey(group, installs.portkey!, PORT.portkey, upstream, run.fleet.pinning.proxy)]);
  }
  if (installs.litellm !== null) {
    peers.push(['litellm', `LiteLLM proxy ${LITELLM_VERSION} (Python, 1 worker, master key) -> upstream`, PORT.litellm, litellmHeaders(),
      () => startLitellm(group, installs.litellm!, PORT.litellm, upstream, run.fleet.pinning.proxy)]);
  }
  const expected = (JSON.parse(CHAT_COMPLETION) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
  for (const [key, label, port, headers, start] of peers) {
    try {
      const proc = await start();
      const spec = aiSpec(port, '', false, headers);
      const res = await fetch(spec.url, { method: 'POST', headers: { 'content-type': 'application/json', ...spec.headers }, body: spec.body });
      const answer = (await res.json()) as { choices?: Array<{ message?: { content?: string } }> };
      if (res.status !== 200 || answer.choices?.[0]?.message?.content !== expected) throw new Error(`answered ${res.status} without the upstream's completion`);
      targets.push({ key, label, spec, pgid: proc.pid });
    } catch (err) {
      missing.push(`${label}: left out: ${(err as Error).message}`);
      log(missing.at(-1)!);
    }
  }
  return missing;
}

/**
 * Holds as many SSE streams open through sluice as the open-file limit allows, up to
 * IDLE_STREAMS (sluice needs a client and an upstream socket for each): its resident memory
 * before and with them, then every client leaves at once and the simulator must see every
 * generation cancelled.
 */
async function idleStreamsSection(run: Run): Promise<IdleStreams> {
  const n = Math.min(IDLE_STREAMS, Math.floor((openFileLimit() - 1000) / 2));
  const pid = run.sluicePgid;
  log(`idle streams: opening ${n} SSE streams through sluice (one token a second each)`);
  const before = rssMiB(pid);
  const streams = await openStreams(PORT.sluice, `/slow-1${CHAT_PATH}`, CHAT_BODY, n, IDLE_OPEN_DEADLINE_MS);
  await sleep(3000);
  const open = rssMiB(pid);
  const upstreamActive = (await simStats(PORT.simSlow)).active;
  const closedAt = performance.now();
  const events = streams.close();
  let stats = await simStats(PORT.simSlow);
  while (stats.active > 0 && performance.now() - closedAt < 10_000) {
    await sleep(50);
    stats = await simStats(PORT.simSlow);
  }
  const perStreamKiB = streams.started > 0 ? ((open - before) * 1024) / streams.started : NaN;
  const result: IdleStreams = {
    streams: n,
    started: streams.started,
    errors: streams.errors,
    open_seconds: round(streams.seconds, 2),
    rss_before_mib: round(before, 1),
    rss_open_mib: round(open, 1),
    kib_per_stream: round(perStreamKiB, 1),
    rss_at_10k_estimate_mib: round(before + (perStreamKiB * IDLE_STREAMS) / 1024),
    upstream_active: upstreamActive,
    upstream_cancelled: stats.cancelled,
    cancel_seconds: round((performance.now() - closedAt) / 1000, 2),
    events,
  };
  log(`idle streams: ${result.started}/${n} started in ${result.open_seconds} s, RSS ${result.rss_before_mib} -> ${result.rss_open_mib} MiB (${result.kib_per_stream} KiB/stream); ${result.upstream_cancelled} upstream generations cancelled in ${result.cancel_seconds} s`);
  if (result.started < n || result.upstream_cancelled < result.started) {
    run.warnings.push(`idle streams: ${result.started}/${n} streams started, ${result.errors} socket errors, ${result.upstream_cancelled} cancellations seen by the simulator.`);
  }
  return result;
}

/**
 * How long a streamed chunk takes from the upstream's write to the client's read, directly
 * and through each proxy, under STAMP_STREAMS concurrent streams; DESIGN.md: within 1 ms. Overheads
 * are paired by round with the direct run, as in the latency section.
 */
async function chunkLatencySection(run: Run): Promise<{ streams: number; chunk_ms: number; seconds: number; rounds: number; rows: ChunkLatencyRow[] }> {
  const targets = [
    { key: 'direct', label: 'upstream direct', port: PORT.stamp, path: '/stream' },
    { key: 'nginx', label: 'nginx 1 worker', port: PORT.nginx, path: '/stamp-1/stream' },
    { key: 'sluice', label: 'sluice 1 worker', port: PORT.sluice, path: '/stamp-1/stream' },
  ];
  const runs = new Map<string, ChunkLatency[]>(targets.map((t) => [t.key, []]));
  for (let r = 0; r < STAMP_ROUNDS; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length]!;
      const res = await measureChunkLatency(t.port, t.path, STAMP_STREAMS, STAMP_SECONDS);
      log(`chunks ${r + 1}/${STAMP_ROUNDS} ${t.label}: ${res.chunks} chunks, p50 ${res.p50_us} us, p99 ${res.p99_us} us, p99.9 ${res.p999_us} us, max ${res.max_us} us`);
      if (res.broken_streams > 0) run.warnings.push(`chunks: ${res.broken_streams} streams through ${t.label} ended during a measurement.`);
      runs.get(t.key)!.push(res);
    }
  }
  const direct = runs.get('direct')!;
  const paired = (key: string, f: 'p50_us' | 'p99_us'): number => round(median(runs.get(key)!.map((x, i) => x[f] - direct[i]![f])));
  const rows: ChunkLatencyRow[] = targets.map((t) => {
    const rs = runs.get(t.key)!;
    const med = (f: 'chunks' | 'p50_us' | 'p99_us' | 'p999_us' | 'max_us'): number => round(median(rs.map((x) => x[f])));
    return {
      key: t.key,
      label: t.label,
      chunks: med('chunks'),
      p50_us: med('p50_us'),
      p99_us: med('p99_us'),
      p999_us: med('p999_us'),
      max_us: med('max_us'),
      overhead_p50_us: t.key === 'direct' ? null : paired(t.key, 'p50_us'),
      overhead_p99_us: t.key === 'direct' ? null : paired(t.key, 'p99_us'),
    };
  });
  return { streams: STAMP_STREAMS, chunk_ms: STAMP_CHUNK_MS, seconds: STAMP_SECONDS, rounds: STAMP_ROUNDS, rows };
}

async function simStats(port: number): Promise<{ active: number; cancelled: number }> {
  return (await (await fetch(url(port, '/_sim/stats'))).json()) as { active: number; cancelled: number };
}

async function sseSection(run: Run): Promise<{ sse: LoadRow[]; checks: StreamCheck[] }> {
  const targets: Target[] = [
    { key: 'direct', label: 'simulator direct', spec: chatSpec(PORT.sim, '') },
    { key: 'nginx', label: 'nginx 1 worker -> simulator', spec: chatSpec(PORT.nginx, '/sim-1'), pgid: run.nginxPgid },
    { key: 'sluice', label: 'sluice 1 worker -> simulator', spec: chatSpec(PORT.sluice, '/sim-1'), pgid: run.sluicePgid, pairedWith: 'nginx' },
  ];
  log('streaming: SSE through nginx and sluice');
  const sse = rowsOf(targets, await rotate(run.gen, targets, run.opts.schedule, run.cores, run.guard));
  // The reference count of data events comes from the simulator itself.
  const reference = countDataEvents(await (await fetch(url(PORT.sim, CHAT_PATH), { method: 'POST', headers: { 'content-type': 'application/json' }, body: CHAT_BODY })).text());
  const checks = [
    await checkStreams('sluice', url(PORT.sluice, `/sim-1${CHAT_PATH}`), STREAM_CHECK_COUNT, reference),
    await checkStreams('nginx', url(PORT.nginx, `/sim-1${CHAT_PATH}`), STREAM_CHECK_COUNT, reference),
  ];
  return { sse, checks };
}

/** POSTs INVOKE_BODY until the answer says it came from the cache (`header: value`); throws when it never does. */
async function expectCacheHit(label: string, endpoint: string, header: string, value: string): Promise<void> {
  let seen = '';
  for (let i = 0; i < 5; i++) {
    const res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: INVOKE_BODY });
    await res.arrayBuffer();
    seen = `status ${res.status}, ${header}: ${res.headers.get(header) ?? '(absent)'}`;
    if (res.status === 200 && res.headers.get(header)?.toLowerCase() === value) return;
    await sleep(100);
  }
  throw new Error(`cache: ${label} did not answer from its cache (last answer: ${seen}); its row would measure forwarding`);
}

/** The same POST forwarded and answered from each proxy's cache; cache rows are compared with nginx's hit. */
async function cacheSection(run: Run): Promise<{ rows: LoadRow[]; counters: NonNullable<Results['cache_counters']> }> {
  const forward: Target[] = [
    { key: 'nginx', label: 'nginx 1 worker -> upstream (POST forwarded)', spec: postSpec(PORT.nginx, `/up-1${INVOKE_PATH}`, INVOKE_BODY), pgid: run.nginxPgid },
    { key: 'sluice', label: 'sluice 1 worker -> upstream (POST forwarded, policies off)', spec: postSpec(PORT.sluice, `/up-1${INVOKE_PATH}`, INVOKE_BODY), pgid: run.sluicePgid },
  ];
  const hits: Target[] = [
    { key: 'nginx-cache', label: 'nginx 1 worker, proxy_cache hit', spec: postSpec(PORT.nginx, `/up-cache${INVOKE_PATH}`, INVOKE_BODY), pgid: run.nginxPgid },
    { key: 'sluice-cache', label: 'sluice 1 worker, cache hit (policies on)', spec: postSpec(PORT.sluicePolicies, `/up-1${INVOKE_PATH}`, INVOKE_BODY), pgid: run.sluicePoliciesPgid },
  ];
  await expectCacheHit('nginx', hits[0]!.spec.url, 'x-cache-status', 'hit');
  await expectCacheHit('sluice', hits[1]!.spec.url, 'x-sluice-cache', 'hit');
  log('cache: the same POST forwarded and answered from the cache, through nginx and sluice');
  const measured = await rotate(run.gen, [forward[0]!, hits[0]!, forward[1]!, hits[1]!], run.opts.schedule, run.cores, run.guard);
  const text = await scrape(PORT.adminPolicies);
  const counters = { hits: metricSum(text, 'sluice_cache_hits_total'), misses: metricSum(text, 'sluice_cache_misses_total') };
  if (counters.misses > 0.01 * counters.hits) run.warnings.push(`cache: sluice counted ${counters.hits} cache hits and ${counters.misses} misses: its cache-hit row is not all hits.`);
  const [nginxForward, sluiceForward] = rowsOf(forward, measured);
  const [nginxHit, sluiceHit] = rowsOf(hits, measured, 'nginx-cache');
  return { rows: [nginxForward!, nginxHit!, sluiceForward!, sluiceHit!], counters };
}

/**
 * Every balancing strategy's path on one sluice instance (strategyDeployments), each one
 * paired with least_outstanding, the default, measured next to it in every round: a pick
 * is a small part of a request's cost, and only neighbouring measurements separate a few
 * percent from the machine's drift.
 */
async function strategiesSection(run: Run): Promise<NonNullable<Results['strategies']>> {
  const deployments = strategyDeployments();
  await expectReportedLoad(run, 'qa-1');
  const targets: Target[] = deployments.map((d) => ({
    key: d.model,
    label: `sluice ${d.strategy} (${d.model}-1, ${d.replicas} replica${d.replicas > 1 ? 's' : ''})`,
    spec: { url: url(PORT.sluiceStrategies, `/${d.model}-1${JSON_PATH}`), connections: CONNECTIONS },
    pgid: run.sluiceStrategiesPgid,
    ...(d.model === 'lo' ? {} : { pairedWith: 'lo' }),
  }));
  const schedule = run.opts.strategySchedule;
  log(`strategies: ${targets.length} deployments on one sluice, each next to least_outstanding, ${schedule.rounds} round(s)`);
  const measured = await rotate(run.gen, targets, schedule, run.cores, run.guard);
  const rows = rowsOf(targets, measured, 'lo');
  const lo = rows[0]!;
  const out: StrategyRow[] = rows.map(({ vs_nginx, ...row }, i) => {
    const d = deployments[i]!;
    const rounds = measured.get(d.model)!.rounds;
    return {
      ...row,
      // least_outstanding is measured once per pair, seven times a round: its round's median.
      rounds_rps: d.model === 'lo' ? perRound(rounds, schedule.rounds, (x) => x.rps) : row.rounds_rps,
      strategy: d.strategy,
      deployment: `${d.model}-1`,
      replicas: d.replicas,
      vs_least_outstanding: vs_nginx,
      rounds_vs_least_outstanding: d.model === 'lo' ? [] : rounds.map((x) => round(x.rps / x.reference_rps!, 3)),
      cpu_vs_least_outstanding: round(row.proxy_cpu_us_per_req / lo.proxy_cpu_us_per_req, 3),
    };
  });
  for (const x of costlyStrategies(out)) run.warnings.push(`strategies: ${x.strategy} served ${x.vs_least_outstanding}x least_outstanding's req/s (more than 3% fewer); per-round ratios: ${x.rounds_vs_least_outstanding.join(', ')}.`);
  return { rounds: schedule.rounds, seconds: schedule.seconds, rows: out };
}

/** The median of `f` over each round's measurements. */
function perRound(rounds: readonly Round[], n: number, f: (x: Round) => number): number[] {
  return Array.from({ length: n }, (_, r) => round(median(rounds.filter((x) => x.round === r).map(f))));
}

/**
 * Waits until the queue_aware deployment's replicas show the load their page reports (the
 * first scrape runs at start-up); warns when they never do, since its pick would then read
 * sluice's in-flight counts alone.
 */
async function expectReportedLoad(run: Run, deployment: string): Promise<void> {
  type Replica = { id: string; load?: { waiting: number | null; error: string | null } };
  let replicas: Replica[] = [];
  for (let i = 0; i < 30; i++) {
    const res = await fetch(url(PORT.adminStrategies, `/v1/deployments/${deployment}`));
    replicas = ((await res.json()) as { replicas?: Replica[] }).replicas ?? [];
    if (replicas.length > 0 && replicas.every((r) => r.load?.waiting !== null && r.load?.waiting !== undefined)) return;
    await sleep(100);
  }
  run.warnings.push(`strategies: ${deployment}'s replicas report no load from ${UPSTREAM_METRICS_PATH} (${replicas.map((r) => `${r.id}: ${r.load?.error ?? 'no load view'}`).join('; ')}): queue_aware picked by in-flight counts alone.`);
}

/** The throughput section's GET over TLS 1.3 and 1.2, through nginx and sluice (bench/lib/tls.ts). */
async function tlsSection(run: Run): Promise<LoadRow[]> {
  const { fleet } = run;
  await fleet.checkPortsFree([PORT.nginxTls, PORT.sluiceTls, PORT.adminTls]);
  const nginx = await startNginxTls(fleet.group, fleet.tools.nginx, PORT.nginxTls, PORT.upstream, fleet.certificate, fleet.pinning.proxy);
  const sluice = await fleet.startSluice([], 'tls');
  const targets = tlsTargets(fleet.group.dir, [
    { name: 'nginx', label: 'nginx 1 worker -> upstream', port: PORT.nginxTls, pgid: nginx.pid },
    { name: 'sluice', label: 'sluice 1 worker -> upstream (policies off)', port: PORT.sluiceTls, pgid: sluice.pid },
  ], `/up-1${JSON_PATH}`, CONNECTIONS);
  log(`tls: ${targets.length} targets, each sluice row next to nginx's of the same protocol and suite`);
  if (run.gen.tool !== 'wrk') run.warnings.push('tls: autocannon does not read OPENSSL_CONF: each row\'s protocol and suite were the servers\' choice, not the one checked.');
  return rowsOf(targets, await rotate(run.gen, targets, run.opts.schedule, run.cores, run.guard), 'nginx-tls13');
}

async function latencySection(run: Run, sluiceMax: number | null): Promise<NonNullable<Results['latency']>> {
  const { opts } = run;
  let rate = opts.rate === 'half' ? (sluiceMax === null ? null : Math.round(sluiceMax / 2)) : opts.rate;
  if (rate === null) {
    run.warnings.push('--rate=half needs the throughput section; 5000 req/s was offered instead.');
    rate = 5000;
  }
  // The small GET with every policy off, and the AI request through sluice as shipped
  // against nginx with its access log (when the defaults instance runs: it always does with
  // this section, see benchmark()).
  const targets: Array<{ key: string; label: string; url: string; ai: boolean; direct: string }> = [
    { key: 'direct', label: 'upstream direct', url: url(PORT.upstream, JSON_PATH), ai: false, direct: 'direct' },
    { key: 'nginx', label: 'nginx 1 worker', url: url(PORT.nginx, `/up-1${JSON_PATH}`), ai: false, direct: 'direct' },
    { key: 'sluice', label: 'sluice 1 worker', url: url(PORT.sluice, `/up-1${JSON_PATH}`), ai: false, direct: 'direct' },
  ];
  if (run.sluiceDefaultsPgid !== 0) {
    targets.push(
      { key: 'direct-ai', label: 'AI request: upstream direct', url: url(PORT.upstream, AI_PATH), ai: true, direct: 'direct-ai' },
      { key: 'nginx-ai-log', label: 'AI request: nginx 1 worker, JSON access log (buffer=64k)', url: url(PORT.nginx, `/up-log${AI_PATH}`), ai: true, direct: 'direct-ai' },
      { key: 'sluice-ai-defaults', label: 'AI request: sluice 1 worker, default config (access log on)', url: url(PORT.sluiceDefaults, `/up-1${AI_PATH}`), ai: true, direct: 'direct-ai' },
    );
  }
  const runs = new Map<string, OpenLoopResult[]>(targets.map((t) => [t.key, []]));
  for (let r = 0; r < opts.latencyRounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length]!;
      const label = `open loop ${r + 1}/${opts.latencyRounds} ${t.label}`;
      const res = (await run.guard.run(label, opts.latencySeconds + 1, () => runOpenLoop(run.fleet, t.url, opts.latencySeconds, rate, t.ai))).value;
      log(`${label}: ${res.achieved_rps} req/s, mean ${res.latency_us.mean} us, p99 ${res.latency_us.p99} us, send lag p99 ${res.send_lag_us.p99} us`);
      runs.get(t.key)!.push(res);
    }
  }
  // Overheads are paired by round (a target's run minus the direct run of the same request
  // and round, seconds apart), then the median is taken: drift between rounds cancels.
  const paired = (t: (typeof targets)[number], f: 'mean' | 'p99'): number[] => {
    const direct = runs.get(t.direct)!;
    return runs.get(t.key)!.map((x, i) => x.latency_us[f] - direct[i]!.latency_us[f]);
  };
  const rows: LatencyRow[] = targets.map((t) => {
    const isDirect = t.key === t.direct;
    return {
      key: t.key,
      label: t.label,
      ...medianOpenLoop(runs.get(t.key)!),
      overhead_mean_us: isDirect ? null : round(median(paired(t, 'mean')), 1),
      overhead_p99_us: isDirect ? null : round(median(paired(t, 'p99')), 1),
      overhead_p99_us_by_round: isDirect ? [] : paired(t, 'p99').map((x) => round(x)),
    };
  });
  for (const row of rows) {
    if (row.achieved_rps < 0.98 * rate) run.warnings.push(`open loop: ${row.label} answered only ${row.achieved_rps} of ${rate} req/s offered: it is saturated and its latency is queueing, not overhead.`);
  }
  return {
    rate,
    seconds: opts.latencySeconds,
    connections: CONNECTIONS,
    rounds: opts.latencyRounds,
    fraction_of_sluice_max: sluiceMax === null ? null : round(rate / sluiceMax, 3),
    rows,
  };
}

/** sluice's p99 overhead over nginx's (medians over rounds); null without both, or when nginx added none. */
function overheadRatio(sluice: LatencyRow | undefined, nginx: LatencyRow | undefined): number | null {
  const a = sluice?.overhead_p99_us;
  const b = nginx?.overhead_p99_us;
  return a === undefined || a === null || b === undefined || b === null || b <= 0 ? null : round(a / b, 2);
}

/** Warnings about how far the rows can be trusted. */
function reviewRows(run: Run, sections: ReadonlyArray<ReadonlyArray<Omit<LoadRow, 'vs_nginx'>> | null>): void {
  for (const rows of sections) {
    for (const row of rows ?? []) {
      if (row.errors + row.non2xx > 0) run.warnings.push(`${row.label}: ${row.errors} socket errors and ${row.non2xx} non-2xx responses over the rounds.`);
      // A proxy row measures the proxy only when the proxy, not the load core, ran out of CPU.
      if (row.key !== 'direct' && row.foreign_cpu_pct < 15 && row.proxy_process_cpu_pct < 90 && row.load_core_busy_pct >= 95) {
        run.warnings.push(`${row.label}: the load core was ${row.load_core_busy_pct}% busy while the proxy used ${row.proxy_process_cpu_pct}% of its core, so the load side (generator, upstream) was the limit; compare the proxies by CPU per request instead.`);
      }
    }
  }
  const load1 = run.fleet.machine.loadavg_at_start[0]!;
  if (load1 > 0.5) run.warnings.push(`the machine was not idle at start (load average ${load1}): other processes compete for the CPUs and add noise.`);
  if (run.guard.repeats > 0) run.warnings.push(`${run.guard.repeats} measurement(s) were repeated because other processes used more than 15% of a core during them.`);
  if (run.guard.disturbed > 0) run.warnings.push(`${run.guard.disturbed} measurement(s) were disturbed by other processes and kept (repeat budget spent): their rounds are less trustworthy; look at the per-round figures.`);
}

async function benchmark(opts: Options, fleet: Fleet, gen: LoadGenerator): Promise<Results> {
  const started = performance.now();
  const want = opts.sections;
  const needSim = want.has('sse');
  const needSlowSim = want.has('streams');
  const needStamp = want.has('chunks');
  const needStrategies = want.has('strategies');
  const needAi = want.has('ai');
  // sluice as shipped: the AI section's reference, and the latency section's AI rows.
  const needDefaults = needAi || want.has('latency');
  await fleet.checkPortsFree([PORT.upstream, PORT.nginx, PORT.sluice, PORT.admin, PORT.sluicePolicies, PORT.adminPolicies, PORT.sluiceXff, PORT.adminXff, ...(want.has('throughput') ? [PORT.sluiceTraced, PORT.adminTraced, PORT.otlpSink] : []), ...(needSim ? [PORT.sim] : []), ...(needSlowSim ? [PORT.simSlow] : []), ...(needStamp ? [PORT.stamp] : []), ...(want.has('clients') ? [0, 1, 2].map((i) => PORT.clients + i) : []), ...(needStrategies ? [PORT.upstreamB, PORT.sluiceStrategies, PORT.adminStrategies] : []), ...(needDefaults ? [PORT.sluiceDefaults, PORT.adminDefaults] : []), ...(needAi ? [PORT.sim50, PORT.sluiceDefaultsNoLog, PORT.adminDefaultsNoLog, PORT.uwsFloor, PORT.rawFloor, PORT.portkey, PORT.litellm] : [])]);
  log('starting upstream nginx, nginx proxy, sluice' + (needSim ? ', simulator' : ''));
  await fleet.upstream(needStrategies);
  if (needSim) await fleet.sim();
  if (needSlowSim) await fleet.slowSim();
  if (needStamp) await fleet.stampServer();
  if (needAi) await fleet.sim50();
  if (want.has('throughput')) await fleet.otlpSink();
  const run: Run = {
    opts, fleet, gen,
    // Others using more than 15% of a core during a measurement make it a repeat; the budget
    // keeps a run on a busy machine within about its usual length.
    guard: new Guard(new ForeignCpu(() => fleet.group.pgids()), 15, opts.quick ? 6 : 20),
    cores: { proxy: fleet.pinning.proxyCpus, rest: fleet.pinning.restCpus },
    nginxPgid: (await fleet.nginxProxy()).pid,
    sluicePgid: (await fleet.startSluice()).pid,
    sluicePoliciesPgid: want.has('throughput') || want.has('cache') ? (await fleet.startSluice([], 'policies')).pid : 0,
    sluiceTracedPgid: want.has('throughput') ? (await fleet.startSluice([], 'traced')).pid : 0,
    sluiceXffPgid: want.has('throughput') ? (await fleet.startSluice([], 'xff')).pid : 0,
    sluiceStrategiesPgid: needStrategies ? (await fleet.startSluice([], 'strategies')).pid : 0,
    sluiceDefaultsPgid: needDefaults ? (await fleet.startSluice([], 'defaults')).pid : 0,
    sluiceDefaultsNoLogPgid: needAi ? (await fleet.startSluice([], 'defaults-nolog')).pid : 0,
    sluiceDefaultsUwsPgid: needAi ? (await fleet.startSluice([], 'defaults-uws')).pid : 0,
    warnings: [],
  };

  const { throughput, clients } = want.has('throughput') || want.has('clients') ? await throughputSection(run) : { throughput: null, clients: null };
  const ai = needAi ? await aiSection(run) : null;
  const cache = want.has('cache') ? await cacheSection(run) : null;
  const strategies = needStrategies ? await strategiesSection(run) : null;
  const tls = want.has('tls') ? await tlsSection(run) : null;
  const streaming = want.has('sse') ? await sseSection(run) : null;
  const sluiceMax = throughput?.find((r) => r.key === 'sluice')?.rps ?? null;
  const latency = want.has('latency') ? await latencySection(run, sluiceMax) : null;
  const chunks = want.has('chunks') ? await chunkLatencySection(run) : null;
  // Last: the streams leave the process's heap larger than the other sections found it.
  const idleStreams = want.has('streams') ? await idleStreamsSection(run) : null;
  const sse = streaming?.sse ?? null;

  const metrics = await fleet.sluiceMetrics();
  if (metrics.upstream_errors > 0) run.warnings.push(`sluice counted ${metrics.upstream_errors} upstream errors during the run.`);
  const strategyErrors = needStrategies ? (await fleet.sluiceMetrics(PORT.adminStrategies)).upstream_errors : 0;
  if (strategyErrors > 0) run.warnings.push(`the strategies sluice counted ${strategyErrors} upstream errors during the run.`);
  reviewRows(run, [throughput, clients, sse, cache?.rows ?? null, strategies?.rows ?? null, ai?.rows ?? null, ai?.sse ?? null, tls]);

  const rowOf = (rows: readonly LoadRow[] | null, key: string): LoadRow | undefined => rows?.find((r) => r.key === key);
  const ratioOf = (rows: readonly LoadRow[] | null, key: string, over: string, field: 'rps' | 'proxy_cpu_us_per_req'): number | null => {
    const a = rowOf(rows, key)?.[field];
    const b = rowOf(rows, over)?.[field];
    return a === undefined || b === undefined ? null : round(a / b, 3);
  };
  const cpuRatio = (rows: readonly LoadRow[] | null): number | null => ratioOf(rows, 'sluice', 'nginx', 'proxy_cpu_us_per_req');
  const lat = (key: string): LatencyRow | undefined => latency?.rows.find((r) => r.key === key);
  return {
    sluice_vs_nginx_rps: rowOf(throughput ?? clients, 'sluice')?.vs_nginx ?? null,
    sluice_vs_nginx_sse: rowOf(sse, 'sluice')?.vs_nginx ?? null,
    sluice_vs_nginx_ai_defaults: rowOf(ai?.rows ?? null, 'sluice-defaults')?.vs_nginx ?? null,
    sluice_vs_nginx_ai_nolog: rowOf(ai?.rows ?? null, 'sluice-nolog')?.vs_nginx ?? null,
    sluice_vs_nginx_ai_sse: rowOf(ai?.sse ?? null, 'sluice-defaults')?.vs_nginx ?? null,
    sluice_root_vs_path_ai: rowOf(ai?.rows ?? null, 'sluice-root')?.vs_nginx ?? null,
    uws_floor_vs_nginx_ai: rowOf(ai?.rows ?? null, 'uws-floor')?.vs_nginx ?? null,
    raw_floor_vs_nginx_ai: rowOf(ai?.rows ?? null, 'raw-floor')?.vs_nginx ?? null,
    node_vs_uws_front_end_ai: ratioOf(ai?.rows ?? null, 'sluice-defaults', 'sluice-uws', 'rps'),
    sluice_vs_portkey_ai: ratioOf(ai?.rows ?? null, 'sluice-defaults', 'portkey', 'rps'),
    sluice_vs_litellm_ai: ratioOf(ai?.rows ?? null, 'sluice-defaults', 'litellm', 'rps'),
    sluice_policies_vs_nginx_rps: rowOf(throughput, 'sluice-policies')?.vs_nginx ?? null,
    sluice_traced_vs_policies_rps: rowOf(throughput, 'sluice-traced')?.vs_nginx ?? null,
    sluice_vs_nginx_rps_with_xff: rowOf(throughput, 'sluice-xff')?.vs_nginx ?? null,
    sluice_vs_nginx_cpu_per_req: cpuRatio(throughput ?? clients),
    sluice_vs_nginx_cpu_per_stream: cpuRatio(sse),
    overhead_mean_us: lat('sluice')?.overhead_mean_us ?? null,
    overhead_p99_us: lat('sluice')?.overhead_p99_us ?? null,
    nginx_overhead_mean_us: lat('nginx')?.overhead_mean_us ?? null,
    nginx_overhead_p99_us: lat('nginx')?.overhead_p99_us ?? null,
    sluice_vs_nginx_p99_overhead: overheadRatio(lat('sluice'), lat('nginx')),
    ai_overhead_p99_us: lat('sluice-ai-defaults')?.overhead_p99_us ?? null,
    nginx_ai_overhead_p99_us: lat('nginx-ai-log')?.overhead_p99_us ?? null,
    sluice_vs_nginx_ai_p99_overhead: overheadRatio(lat('sluice-ai-defaults'), lat('nginx-ai-log')),
    sluice_vs_nginx_tls: rowOf(tls, 'sluice-tls13')?.vs_nginx ?? null,
    sluice_vs_nginx_tls12: rowOf(tls, 'sluice-tls12')?.vs_nginx ?? null,
    sluice_cache_hit_vs_nginx_cache_hit_rps: rowOf(cache?.rows ?? null, 'sluice-cache')?.vs_nginx ?? null,
    sluice_cache_hit_vs_sluice_forward_rps: ratioOf(cache?.rows ?? null, 'sluice-cache', 'sluice', 'rps'),
    strategies_vs_least_outstanding_rps: strategies === null ? null
      : Object.fromEntries(strategies.rows.filter((x) => x.replicas > 1).map((x) => [x.strategy, x.vs_least_outstanding])),
    date: new Date().toISOString(),
    command: commandLine(opts.argv),
    quick: opts.quick,
    machine: fleet.machine,
    pinning: fleet.pinning.description,
    priority: fleet.priority,
    load_tool: gen.describe(),
    schedule: { rounds: opts.schedule.rounds, seconds: opts.schedule.seconds, warmup_seconds: opts.schedule.warmupSeconds, connections: CONNECTIONS },
    throughput,
    ai: ai === null ? null : { rows: ai.rows, sse: ai.sse, peers: ai.peers },
    clients,
    sse,
    sse_checks: streaming?.checks ?? null,
    cache: cache?.rows ?? null,
    cache_counters: cache?.counters ?? null,
    strategies,
    tls,
    idle_streams: idleStreams,
    chunk_latency: chunks,
    latency,
    sluice: { uws_native: fleet.uwsNative, ...metrics },
    measurements_repeated: run.guard.repeats,
    measurements_disturbed: run.guard.disturbed,
    warnings: [...new Set(run.warnings)],
    seconds_elapsed: round((performance.now() - started) / 1000),
  };
}

/**
 * `--profile`: sluice under --cpu-prof with the GET load, then with SSE, then the AI request
 * through sluice as shipped (access log on, then off), then the minimal proxy on its client
 * with GET.
 */
async function profile(opts: Options, fleet: Fleet, gen: LoadGenerator): Promise<string> {
  await fleet.checkPortsFree([PORT.upstream, PORT.sim, PORT.sluice, PORT.admin, PORT.clients, PORT.sluiceDefaults, PORT.adminDefaults, PORT.sluiceDefaultsNoLog, PORT.adminDefaultsNoLog]);
  await fleet.upstream();
  await fleet.sim();
  const seconds = opts.quick ? 3 : 10;
  const parts: string[] = [`# sluice CPU profile, ${new Date().toISOString()} on ${hostname()}`, '', `- command: \`${commandLine(opts.argv)}\``, `- pinning: ${fleet.pinning.description}; ${fleet.priority}`, `- ${seconds} s of load per workload (${gen.describe()}, ${CONNECTIONS} connections) after a ${opts.schedule.warmupSeconds} s warm-up; the profiler itself slows sluice down, so the req/s here are not comparable with the table`, ''];
  // The minimal uWS proxy on sluice's own upstream client is profiled too: the difference
  // between its profile and sluice's is what sluice's request path adds.
  const sluiceGet = { url: url(PORT.sluice, `/up-1${JSON_PATH}`), connections: CONNECTIONS };
  const minimalGet = { url: url(PORT.clients, JSON_PATH), connections: CONNECTIONS };
  const workloads: Array<[string, Omit<LoadSpec, 'seconds'>, (nodeArgs: string[]) => Promise<Proc>]> = [
    ['sluice, GET small JSON', sluiceGet, (a) => fleet.startSluice(a)],
    ['sluice, SSE streams', chatSpec(PORT.sluice, '/sim-1'), (a) => fleet.startSluice(a)],
    ['sluice default config, AI request', aiSpec(PORT.sluiceDefaults, '/up-1'), (a) => fleet.startSluice(a, 'defaults')],
    ['sluice default config without access log, AI request', aiSpec(PORT.sluiceDefaultsNoLog, '/up-1'), (a) => fleet.startSluice(a, 'defaults-nolog')],
    ['sluice every policy off, AI request', aiSpec(PORT.sluice, '/up-1'), (a) => fleet.startSluice(a)],
    ['minimal uWS + sluice UpstreamPool, GET small JSON', minimalGet,
      async (a) => (await startClientProxies(fleet.group, fleet.pinning.proxy, PORT.upstream, PORT.clients, CONNECTIONS, ['sluice-pool'], a))[0]!.proc],
  ];
  for (const [name, spec, start] of workloads) {
    const dir = join(fleet.group.dir, `prof-${name.replace(/\W+/g, '-')}`);
    mkdirSync(dir, { recursive: true });
    const proc = await start(['--cpu-prof', '--cpu-prof-dir', dir]);
    await gen.run({ ...spec, seconds: opts.schedule.warmupSeconds });
    const res = await gen.run({ ...spec, seconds });
    log(`profiled ${name}: ${Math.round(res.rps)} req/s under the profiler`);
    // A clean stop lets every thread write its profile.
    await fleet.group.stop(proc, 20_000);
    await sleep(200);
    // Kept outside the temp dir (dist-bench/ is git-ignored) for Chrome DevTools or speedscope.
    const kept = join(BENCH_DIR, 'profiles', `${name.replace(/\W+/g, '-')}.cpuprofile`);
    mkdirSync(join(BENCH_DIR, 'profiles'), { recursive: true });
    copyFileSync(busiestProfile(dir), kept);
    parts.push(renderProfile(`${name} (${Math.round(res.rps)} req/s while profiled)`, summariseProfile(kept, 30)));
  }
  return parts.join('\n');
}

function writeResults(name: string, files: Record<string, string>): string[] {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  return Object.entries(files).map(([ext, content]) => {
    const file = join(dir, `${name}${ext}`);
    writeFileSync(file, content);
    return file;
  });
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const group = new ProcessGroup(mkdtempSync(join(tmpdir(), 'sluice-bench-')));
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await group.stopAll();
    group.dispose();
  };
  onInterrupt(cleanup);
  try {
    const tools = ensureTools();
    const pinning = planPinning();
    const priority = opts.nice === 0 ? 'normal priority' : raisePriority(opts.nice);
    log(`${pinning.description}; ${priority}`);
    const fleet = new Fleet(group, tools, pinning, priority);
    const gen = new LoadGenerator(group, tools.wrk === null ? 'autocannon' : 'wrk', pinning.rest, Math.min(4, pinning.restCount));
    const day = new Date().toISOString().slice(0, 10);
    if (opts.profile) {
      const md = await profile(opts, fleet, gen);
      const written = writeResults(`${day}-${hostname()}-profile${opts.quick ? '-quick' : ''}`, { '.md': md });
      process.stdout.write(`${md}\n`);
      log(`written ${written.join(', ')}`);
      return;
    }
    const results = await benchmark(opts, fleet, gen);
    const md = renderMarkdown(results);
    // A partial run (--only, --clients) gets its own name: it must not overwrite the day's full report.
    const partial = opts.sections.size < SECTIONS.length ? `-${SECTIONS.filter((x) => opts.sections.has(x)).join('-')}` : '';
    const written = writeResults(`${day}-${hostname()}${partial}${opts.quick ? '-quick' : ''}`, { '.md': md, '.json': `${JSON.stringify(results, null, 2)}\n` });
    process.stdout.write(opts.json ? `${JSON.stringify(results)}\n` : `${md}\n`);
    log(`written ${written.join(', ')}`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
