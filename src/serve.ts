// `sluice serve`: the composition root, the one module that imports both the control plane
// and the admin API. It wires config -> state -> key registry and deployment manager ->
// data-plane workers -> admin API, publishes route tables, and hands the admin API only the
// control plane's facade (control/facade.ts).

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { constants as osConstants } from 'node:os';
import { parseArgs } from 'node:util';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AdminServer, registerAdminRoutes } from './admin/index.js';
import { BreakerBoard, DeploymentCounters, ReplicaLoadBoard, WorkerHolds } from './balancer/index.js';
import { ConfigError, DEFAULT_CONFIG_FILE, deploymentId, frontEndOf, guardedHosts, loadConfig, redactUrlSecrets, type Config, type PoliciesConfig, type TlsConfig } from './config/index.js';
import { CircuitOpenError, DependencyBreakers } from './dependencies/index.js';
import {
  type BucketAssigner, BucketSlots, buildRouteSnapshot, CertificateReloader, DataPlane, Autoscaler, DeploymentManager, hstsValue, IndexAllocator, isProblem, KeyRegistry, MAX_REPLICA_SLOTS,
  readCertificatePair, RemovedCosts, ReplicaSharing, RolloutCounts, costUsd, deploymentCost, SlotAllocator, TrafficRegistry, type CertificatePair, type ControlPlane, type Deployment, type Replica, type TlsPort, type VersionInfo,
} from './control/index.js';
import { SharedBuckets } from './policy/index.js';
import { PortAllocator } from './ports/index.js';
import type { RouteTableSnapshot, SharedBuffers } from './proxy/index.js';
import { FileStateStore, HibernationRecords, loadInstanceId, RedisStateStore, ReplicaRecords, StateDirLock, StateLostError } from './state/index.js';
import { missingNodeFlags } from './node-flags.js';
import { createLogger, LineWriter, fineQuantile, mergeRefusals, mergeStats, renderDependencyBreakers, renderLogCounts, renderStats, renderTraceSpans, RetiredSeries, sumSpans, type Logger } from './telemetry/index.js';
import { authority } from './authority.js';

/** The running gateway process, as `sluice serve` holds it. */
export interface RunningGateway {
  readonly config: Config;
  readonly port: number;
  readonly adminPort: number;
  readonly manager: DeploymentManager;
  /**
   * The shutdown sequence (config `shutdown`): /readyz answers 503 on both ports, requests
   * are still served for drain_delay_ms, then the data plane stops accepting, requests in
   * flight finish (up to grace_ms), the model servers stop. A second call (a second signal)
   * ends the drain delay at once, for an operator who does not want to wait.
   */
  shutdown(signal: string): Promise<void>;
  /** TLS configured: reads the certificates again (SIGHUP), see CertificateReloader; null without TLS. */
  readonly reloadCertificates: ((reason: string) => Promise<void>) | null;
}

const RECONCILE_INTERVAL_MS = 2_000;
/** Instances on one Redis follow each other's traffic changes within a second. */
const TRAFFIC_FOLLOW_INTERVAL_MS = 400;
const MAX_DEPLOYMENTS = 1024;
const MAX_BUCKETS = 65_536;
const BREAKER_STATES: readonly string[] = ['closed', 'open', 'half-open'];
/** The main thread's log lines waiting for a stalled stdout, at most. */
const MAIN_LOG_MAX_BYTES = 4 * 1024 * 1024;
/** At exit, how long a stalled stdout may hold the last lines. */
const EXIT_LOG_MS = 1000;

const SERVE_USAGE = `Usage: sluice serve [--config FILE]

Runs the gateway: the data plane on listen.port, the admin API on admin.port.

Options:
  -c, --config FILE  the config file (default ${DEFAULT_CONFIG_FILE}); SLUICE_* variables override it
  -h, --help         show this help

SIGTERM or SIGINT drains and stops (a second one ends the drain delay); SIGHUP reloads the
TLS certificates; SIGUSR1 and SIGUSR2 are logged and ignored.
`;

export async function runServeCli(argv: string[]): Promise<void> {
  let args: { config?: string; help?: boolean };
  try {
    args = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values;
  } catch (err) {
    // An unknown option, a missing value, an extra argument: a usage error, exit 2 as for
    // every command (cli/errors.ts; its module stays unloaded here, as sim's does).
    if (!String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) throw err;
    process.stderr.write(`sluice serve: ${(err as Error).message}\n${SERVE_USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (args.help === true) {
    process.stdout.write(SERVE_USAGE);
    return;
  }
  const config = loadConfig(args.config ?? DEFAULT_CONFIG_FILE);
  // Written on the thread pool: a stalled stdout never freezes the control plane.
  const stdout = new LineWriter({ fd: 1, bufferBytes: 0, maxBufferBytes: MAIN_LOG_MAX_BYTES, flushIntervalMs: 0 });
  const logger = createLogger({ level: config.log.level, writer: stdout });
  // Signals sluice gives no meaning to: Node's defaults would open its debugger on
  // 127.0.0.1:9229, where any local user may run code in the gateway (SIGUSR1, which a
  // logrotate habit sends to "reopen the logs"), or end the process on the spot, without a
  // drain or its model servers' stop (SIGUSR2).
  for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) {
    process.on(signal, () => logger.info({ signal }, 'signal ignored: it means nothing to sluice'));
  }
  // A write past the file size limit (`ulimit -f`: the log on stdout, a state file) raises
  // SIGXFSZ, whose default ends the process on the spot, model servers left running. Handled,
  // the write fails with EFBIG instead, which the writers deal with (lines dropped and counted,
  // a change refused). Nothing is logged here: the log may be that very file.
  process.on('SIGXFSZ', () => undefined);
  const missing = missingNodeFlags();
  if (missing.length > 0) logger.warn({ missing }, 'started without the recommended Node flags: p99 latency at moderate load is about twice what it is with them (node $(sluice node-flags) dist/cli.js serve; see README)');
  const lock = await StateDirLock.take(config.state_dir);
  let gateway: RunningGateway | undefined;
  // A stop asked for while the gateway starts waits for the start: Node's default would end
  // the process there and then, leaving the model servers it had spawned running. A second
  // one ends it at once, as an impatient Ctrl-C wants (the next start adopts or stops them).
  let stopWhenStarted: NodeJS.Signals | undefined;
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (gateway === undefined) {
      if (stopWhenStarted !== undefined) process.exit(128 + osConstants.signals[signal]);
      stopWhenStarted = signal;
      logger.info({ signal }, 'stopping once started: the model servers being started are stopped with it (a second signal ends the gateway at once)');
      return;
    }
    const first = !stopping;
    stopping = true;
    const done = gateway.shutdown(signal);
    if (!first) return;
    const exit = (code: number): void => {
      lock.release();
      void stdout.close(EXIT_LOG_MS).then(() => process.exit(code));
    };
    done.then(() => exit(0), (err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      exit(1);
    });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // SIGHUP reloads what can be: a closed terminal or a reload sent by habit must not end a
  // daemon the way Node's default does, without a drain, its buffered log lines or its
  // model servers' stop.
  process.on('SIGHUP', () => {
    if (gateway === undefined) logger.info({ signal: 'SIGHUP' }, 'nothing to reload yet: the gateway is starting');
    else if (gateway.reloadCertificates !== null) void gateway.reloadCertificates('SIGHUP');
    else logger.info({ signal: 'SIGHUP' }, 'nothing to reload: no TLS is configured');
  });
  try {
    gateway = await startGateway(config, logger, stdout);
  } catch (err) {
    lock.release();
    throw err;
  }
  if (stopWhenStarted !== undefined) shutdown(stopWhenStarted);
}

/** `stdout`: the writer under `logger`, for its line counts in /metrics. */
export async function startGateway(config: Config, logger: Logger, stdout: LineWriter): Promise<RunningGateway> {
  let adminHost = config.admin.host;
  if (config.admin.token === null && !isLoopback(adminHost)) {
    logger.warn({ host: adminHost }, 'no admin token configured: the admin API listens on 127.0.0.1 only');
    adminHost = '127.0.0.1';
  }
  // Checked before anything is bound: a pair that cannot serve stops the start, naming the field.
  const listenPair = await startupCertificate(config.listen.tls, 'listen', frontEndOf(config.listen) === 'uws');
  const adminPair = await startupCertificate(config.admin.tls, 'admin', false);
  // Every worker must bind the same port, so an ephemeral port is chosen once, here.
  const port = config.listen.port === 0 ? await freePort(config.listen.host) : config.listen.port;
  const slots = new SlotAllocator();
  const deploymentSlots = new IndexAllocator(MAX_DEPLOYMENTS, 'deployments (draining ones included)');
  const shared: SharedBuffers = {
    inflight: slots.buffer,
    breakers: BreakerBoard.allocate(MAX_REPLICA_SLOTS),
    buckets: SharedBuckets.allocate(MAX_BUCKETS),
    deployments: DeploymentCounters.allocate(MAX_DEPLOYMENTS),
    replicaLoad: ReplicaLoadBoard.allocate(MAX_REPLICA_SLOTS),
    holds: { buffer: WorkerHolds.allocate(config.workers, MAX_REPLICA_SLOTS, MAX_DEPLOYMENTS), replicaSlots: MAX_REPLICA_SLOTS, deploymentSlots: MAX_DEPLOYMENTS },
  };
  const replicaLoad = new ReplicaLoadBoard(shared.replicaLoad);
  const breakers = new BreakerBoard(shared.breakers);
  const deploymentCounters = new DeploymentCounters(shared.deployments);
  const sharedBuckets = new SharedBuckets(shared.buckets);
  const bucketSlots = new BucketSlots(MAX_BUCKETS, (slot) => sharedBuckets.reset(slot));
  const ports = new PortAllocator({ from: config.ports.from, to: config.ports.to });
  let tableVersion = 0;
  let dataPlane: DataPlane | null = null;
  // At start-up, ready once every deployment meant to run (config and stored ones) has a
  // ready replica or has failed, so that a balancer sends no traffic that would get 503s.
  // From then on, ready while any deployment is: a deployment added later through the API
  // must not take the whole gateway out of its balancer while it starts.
  let restored = false;
  let startedUp = false;
  let readyLogged = false;
  // Set when shutdown begins: 503 from then on, whatever the deployments do.
  let draining = false;
  const ready = (): boolean => {
    if (!restored || draining) return false;
    const list = manager.list();
    if (!startedUp) startedUp = list.every((d) => d.state !== 'pending' && d.state !== 'starting');
    // A hibernated deployment serves too: its next request wakes it.
    return startedUp && list.some((d) => d.state === 'ready' || d.state === 'hibernated');
  };
  // While a table is built, every model's alias asks for its versions: one pass over the
  // deployments serves them all (a pass per model would make each table quadratic).
  let byModel: Map<string, Deployment[]> | null = null;
  const deploymentsOf = (model: string): Deployment[] => (byModel ?? manager.byModel()).get(model) ?? [];
  const snapshot = (keyList = keys.list(), buckets: BucketAssigner = bucketSlots): RouteTableSnapshot => {
    byModel = manager.byModel();
    try {
      return buildRouteSnapshot({
        version: buckets === bucketSlots ? ++tableVersion : tableVersion, ready: ready(), deployments: manager.routable(), alias: (model) => traffic.aliasFor(model), keys: keyList, buckets,
        maxBufferedBodyBytes: config.limits.max_buffered_body_bytes,
        maxBufferedBytes: config.limits.max_buffered_bytes,
        countTokens: config.metrics.tokens,
      });
    } finally {
      byModel = null;
    }
  };
  // Changes that come together (hundreds of replicas turning ready or unhealthy at once, a
  // start-up) publish one table, not one each: every table is built, posted and compiled
  // whole, by the control plane and by each worker, so one per change grew as deployments
  // times changes and stalled the workers' requests. A wait for the workers to route by the
  // latest table (routesApplied) publishes a pending one first.
  let publishPending = false;
  const publishTable = (): void => {
    publishPending = false;
    // Keys load before the deployment manager exists; the data plane starts from a snapshot.
    if (dataPlane === null) return;
    const snap = snapshot();
    dataPlane.publish(snap);
    if (snap.ready && !readyLogged) {
      readyLogged = true;
      logger.info({ deployments: manager.list().map((d) => `${d.id}: ${d.state}`) }, 'ready');
    }
  };
  const publishNow = (): void => {
    if (!publishPending) return;
    try {
      publishTable();
    } catch (err) {
      // Rate-limit buckets used up (SLUICE_ERR_LIMIT_REACHED): the workers keep the last
      // table, and the next change tries again.
      logger.error({ err }, 'cannot build a route table: the data plane keeps routing by the last one');
    }
  };
  const publish = (): void => {
    if (publishPending) return;
    publishPending = true;
    setImmediate(publishNow);
  };
  // The control plane's breakers around its dependencies (the workers have their own).
  const dependencies = new DependencyBreakers(logger);
  const stateDependency = config.dependencies.redis.state;
  const store = config.redis.url === null
    ? new FileStateStore(config.state_dir)
    : new RedisStateStore(config.redis.url, {
      timeoutMs: stateDependency.timeout_ms, breaker: dependencies.forCalls('redis', 'state', stateDependency),
      onUnreadable: (message) => logger.error(message),
    });
  const records = new ReplicaRecords(config.state_dir);
  const keys = new KeyRegistry({
    configured: config.api_keys, store, logger, onChange: publish,
    // Before the deployment manager exists (the keys load first), the start's own table checks them.
    fits: (key) => {
      if (dataPlane !== null) snapshot([...keys.list(), key], bucketSlots.trial());
    },
  });
  const versionsOf = (model: string): VersionInfo[] => deploymentsOf(model).map((d) => ({
    version: d.spec.version, deployment: d.id, state: d.state, readyReplicas: d.replicas.filter((r) => r.ready).length, routable: d.routable,
    asleep: d.state === 'hibernated' || d.wakeStartedAt !== null,
    restarts: d.replicas.reduce((n, r) => n + (r.process?.restarts ?? 0), 0),
  }));
  const registry = new Registry();
  const rollouts = new Counter({ name: 'sluice_rollouts_total', help: 'Rollouts that ended, by model and result (promoted, rolled_back, aborted).', labelNames: ['model', 'result'], registers: [registry] });
  // This process among the instances sharing one Redis (rollout leases and counts).
  const instance = randomUUID();
  const counts = new RolloutCounts({
    store, instance, logger,
    local: async () => mergeStats((await dataPlane!.collectStats()).map((w) => w.deployments)),
    deploymentsOf: (model) => versionsOf(model).map((v) => v.deployment),
  });
  const traffic = new TrafficRegistry({
    config: config.traffic, store, logger, versionsOf, onChange: publish, instance,
    deployedModels: () => manager.list().map((d) => d.spec.model),
    desired: async () => {
      const stored = await store.load();
      // An entry this version cannot read is still a version in the desired state.
      return new Set([...[...config.deployments, ...stored.deployments.map((d) => d.spec)].map((s) => deploymentId(s.model, s.version)), ...stored.unreadable]);
    },
    stats: (model) => counts.of(model),
    onRolloutFinished: (model, result) => rollouts.inc({ model, result }),
  });
  // Read state before binding anything: corrupt state must stop the start-up with a clear error.
  try {
    await store.load();
    await keys.load();
    await traffic.load();
    const memoryRisk = await store.memoryRisk();
    if (memoryRisk !== null) logger.warn({ state: store.kind }, memoryRisk);
  } catch (err) {
    // An open Redis client would keep retrying, and the process alive, after the error.
    await store.close();
    throw err;
  }
  const coldStarts = new Counter({ name: 'sluice_cold_starts_total', help: 'Hibernated deployments woken by a request or by hand.', labelNames: ['deployment'], registers: [registry] });
  const coldStartSeconds = new Histogram({
    name: 'sluice_cold_start_seconds', help: 'From the start of a wake to the first ready replica.', labelNames: ['deployment'], registers: [registry],
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
  });
  const removedCosts = new RemovedCosts();
  const retiredSeries = new RetiredSeries(config.metrics.retired_series_ms);
  const manager = new DeploymentManager({
    config, ports, slots, deploymentSlots, logger, onChange: publish, store, records, replicaLoad,
    fits: () => {
      snapshot(keys.list(), bucketSlots.trial());
    },
    onRemoved: (model): Promise<void> => traffic.pruneUndeployed(model).catch((err: unknown) => logger.error({ err, model }, 'could not drop the weights of undeployed versions')),
    routesApplied: () => {
      publishNow();
      return dataPlane?.routesApplied() ?? Promise.resolve();
    },
    hibernation: new HibernationRecords(config.state_dir),
    ...(store.kind === 'redis' ? {
      sharing: new ReplicaSharing(store, await loadInstanceId(config.state_dir, (madeIn) => logger.warn(
        { state_dir: config.state_dir, made_in: madeIn },
        'state_dir/instance-id was made in another directory (this state dir is a copy): this gateway takes an id of its own, so as not to share the lease of the servers that instance runs',
      ))),
    } : {}),
    onColdStart: (id, seconds) => {
      coldStarts.inc({ deployment: id });
      coldStartSeconds.observe({ deployment: id }, seconds);
    },
    // Its final costs stay in /v1/costs; read from the workers before they drop its stats.
    onRetiring: async (d): Promise<void> => {
      const stats = dataPlane === null ? undefined : await dataPlane.collectStats().then(
        (workers) => mergeStats(workers.map((w) => w.deployments)).get(d.id),
        (err: unknown) => { logger.warn({ err, deployment: d.id }, 'could not read an undeployed deployment\'s final stats: its cost keeps its replica hours only'); return undefined; },
      );
      const now = Date.now();
      removedCosts.add(d, stats, now);
      retiredSeries.keep(d.id, stats, d.replicaCostUsd(now), now);
    },
    // Its cold starts leave /metrics now; its request series stay for metrics.retired_series_ms (retiredSeries).
    onForgotten: (id) => {
      coldStarts.remove({ deployment: id });
      coldStartSeconds.remove({ deployment: id });
    },
    onDeploymentSlot: (slot) => deploymentCounters.reset(slot),
    onReplicaSlot: (slot) => breakers.reset(slot),
    queued: (slot) => deploymentCounters.queueLength(slot),
    breakerState: (slot) => BREAKER_STATES[breakers.state(slot)] ?? 'unknown',
  });

  dataPlane = new DataPlane({
    host: config.listen.host, port, workers: config.workers, logLevel: config.log.level,
    accessLog: {
      all: config.log.access, bufferBytes: config.log.access_buffer_bytes, maxBufferBytes: config.log.access_max_buffer_bytes,
      flushMs: config.log.access_flush_ms, sample: config.log.access_sample,
    },
    forwardedFor: config.listen.forwarded_for, corsOrigins: config.listen.cors_origins, allowedHosts: guardedHosts(config.listen), frontEnd: frontEndOf(config.listen), clientIdleTimeoutMs: config.listen.client_idle_timeout_ms, clientHeaderTimeoutMs: config.listen.client_header_timeout_ms, shared, logger,
    tls: config.listen.tls === undefined ? null : { certFile: config.listen.tls.cert_file, keyFile: config.listen.tls.key_file, minVersion: config.listen.tls.min_version, ticketKeys: randomBytes(48) },
    hsts: config.listen.hsts === undefined ? null : hstsValue(config.listen.hsts),
    redis: config.redis.url === null ? null : {
      url: config.redis.url, timeoutMs: config.rate_limit.redis_timeout_ms, cacheTimeoutMs: config.cache.redis_timeout_ms,
      breakers: { rate_limit: config.dependencies.redis.rate_limit, cache: config.dependencies.redis.cache },
    },
    rateLimitFailOpen: config.rate_limit.on_redis_error === 'open',
    tracing: config.tracing.enabled ? { config: config.tracing, breaker: config.dependencies.otlp.export } : null,
    onWake: (id) => {
      manager.wake(id, 'a request is waiting').catch((err: unknown) => logger.error({ deployment: id, err }, 'wake failed'));
    },
  });
  const autoscaler = new Autoscaler({ manager, counters: deploymentCounters, slots, logger, graceMs: config.shutdown.grace_ms });
  try {
    await dataPlane.start(snapshot());
  } catch (err) {
    // A port that cannot be listened on ends the start: the Redis client (with redis.url)
    // would otherwise keep reconnecting, and the process alive, after the error was printed.
    await store.close();
    throw err;
  }
  if (config.tracing.enabled) logger.info({ endpoint: redactUrlSecrets(config.tracing.endpoint), sample_ratio: config.tracing.sample_ratio, parent_based: config.tracing.parent_based }, 'tracing: every worker exports its spans over OTLP/HTTP');
  if (!dataPlane.native) logger.error('uWebSockets.js runs its slow fallback, not the native binding');
  if (dataPlane.upstreamTransport === 'net_socket') {
    // forced: SLUICE_UPSTREAM_TRANSPORT=socket; otherwise Node's internals are missing or changed.
    logger.warn({ forced: process.env['SLUICE_UPSTREAM_TRANSPORT'] === 'socket' }, 'the upstream client runs on the slower public net.Socket API, not Node\'s internal stream handle');
  }

  collectDefaultMetrics({ register: registry, prefix: 'sluice_process_' });
  // prom-client names these gauges *_total, which Prometheus reserves for counters
  // (promtool check metrics refuses them); the handle and request counts are not worth a lint failure.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`sluice_process_${name}`);
  const dp = dataPlane;
  new Gauge({ name: 'sluice_uws_native', help: '1 when the data plane runs the native uWebSockets.js binding.', registers: [registry], collect() { this.set(dp.native ? 1 : 0); } });
  new Gauge({
    name: 'sluice_upstream_transport', help: 'How upstream connections move bytes: 1 for the transport in use (stream_handle: Node internals, fast; net_socket: public API fallback).',
    labelNames: ['transport'], registers: [registry],
    collect() { for (const t of ['stream_handle', 'net_socket'] as const) this.set({ transport: t }, dp.upstreamTransport === t ? 1 : 0); },
  });
  new Gauge({ name: 'sluice_route_table_version', help: 'Version of the route table last published.', registers: [registry], collect() { this.set(tableVersion); } });
  new Gauge({ name: 'sluice_data_plane_workers', help: 'Data-plane worker threads running (one that died counts again once another runs in its place).', registers: [registry], collect() { this.set(dp.workerCount); } });
  new Counter({
    name: 'sluice_data_plane_worker_restarts_total', help: 'Data-plane workers started in place of one that exited unexpectedly.', registers: [registry],
    collect() {
      this.reset();
      this.inc(dp.restarts);
    },
  });
  /**
   * One series per replica of every deployment: a gauge, or a counter for a count that only
   * grows while its replica lives (a new replica's series starts at 0, which Prometheus reads as a reset).
   */
  const replicaSeries = (Metric: typeof Gauge | typeof Counter, name: string, help: string, value: (r: Replica) => number): void => {
    new Metric({
      name, help, labelNames: ['deployment', 'replica'], registers: [registry],
      collect(this: Gauge | Counter) {
        this.reset();
        for (const d of manager.list()) {
          for (const r of d.replicas) {
            const labels = { deployment: d.id, replica: r.id };
            if (this instanceof Gauge) this.set(labels, value(r));
            else this.inc(labels, value(r));
          }
        }
      },
    });
  };
  const replicaGauge = (name: string, help: string, value: (r: Replica) => number): void => replicaSeries(Gauge, name, help, value);
  const replicaCounter = (name: string, help: string, value: (r: Replica) => number): void => replicaSeries(Counter, name, help, value);
  replicaGauge('sluice_breaker_state', 'Circuit breaker of each replica: 0 closed, 1 open, 2 half-open.', (r) => breakers.state(r.slot));
  replicaCounter('sluice_breaker_opens_total', 'Times each replica breaker opened since the replica started.', (r) => breakers.opens(r.slot));
  replicaGauge('sluice_replica_ready', '1 while a replica is routed: started and ready, or (remote) passing its health checks.', (r) => (r.ready ? 1 : 0));
  replicaCounter('sluice_replica_restarts_total', 'Times the supervisor restarted each replica\'s model server since the replica started (cold starts: sluice_cold_starts_total).', (r) => r.process?.restarts ?? 0);
  new Counter({
    name: 'sluice_health_checks_total', help: 'Active health checks of remote replicas, by result.', labelNames: ['deployment', 'replica', 'result'], registers: [registry],
    collect() {
      this.reset();
      for (const d of manager.list()) {
        for (const r of d.replicas) {
          if (r.health === null) continue;
          this.inc({ deployment: d.id, replica: r.id, result: 'pass' }, r.health.checks - r.health.failures);
          this.inc({ deployment: d.id, replica: r.id, result: 'fail' }, r.health.failures);
        }
      }
    },
  });
  new Gauge({
    name: 'sluice_policy_setting',
    help: 'Effective policy settings of each deployment (booleans as 0/1; 0 limits mean none), as GET /v1/deployments/{id} shows them.',
    labelNames: ['deployment', 'setting'], registers: [registry],
    collect() {
      this.reset();
      for (const d of manager.list()) for (const [setting, value] of policySettings(d.policies)) this.set({ deployment: d.id, setting }, value);
    },
  });
  new Gauge({
    name: 'sluice_queue_depth', help: 'Requests waiting for a replica under max_inflight, across workers.', labelNames: ['deployment'], registers: [registry],
    collect() {
      this.reset();
      for (const d of manager.list()) this.set({ deployment: d.id }, deploymentCounters.queueLength(d.slot));
    },
  });
  replicaGauge('sluice_replica_inflight', 'Requests in flight per replica, across workers.', (r) => slots.inflight(r.slot));
  new Gauge({
    name: 'sluice_deployment_replicas', help: 'Replicas of each deployment that run or start (not those being removed by a scale-down).', labelNames: ['deployment'], registers: [registry],
    collect() {
      this.reset();
      for (const d of manager.list()) this.set({ deployment: d.id }, d.activeReplicas);
    },
  });
  new Counter({
    name: 'sluice_scale_events_total', help: 'Autoscaling and hibernation changes of each deployment, by action (scale_up, scale_down, scale_up_refused, hibernate, wake, wake_failed).',
    labelNames: ['deployment', 'action'], registers: [registry],
    collect() {
      this.reset();
      for (const d of manager.list()) for (const [action, n] of d.eventCounts) this.inc({ deployment: d.id, action }, n);
    },
  });
  new Gauge({
    name: 'sluice_deployment_hibernated', help: '1 while a deployment is hibernated (its replicas stopped until a request wakes it).', labelNames: ['deployment'], registers: [registry],
    collect() {
      this.reset();
      for (const d of manager.list()) this.set({ deployment: d.id }, d.state === 'hibernated' ? 1 : 0);
    },
  });
  const metrics = async (): Promise<string> => {
    const workers = await dp.collectStats();
    const now = Date.now();
    const replicaCostUsd = new Map(manager.list().map((d) => [d.id, d.replicaCostUsd(now)]));
    let lines = stdout.lines;
    let dropped = stdout.dropped;
    for (const w of workers) {
      lines += w.log.lines;
      dropped += w.log.dropped;
    }
    const breakerSnapshots = dependencies.snapshot();
    for (const w of workers) breakerSnapshots.push(...w.breakers);
    const stats = mergeStats(workers.map((w) => w.deployments));
    retiredSeries.addTo(stats, replicaCostUsd, now);
    return renderStats(stats, replicaCostUsd, mergeRefusals(workers.map((w) => w.unroutedRefusals))) + renderLogCounts(lines, dropped) +
      (config.tracing.enabled ? renderTraceSpans(sumSpans(workers.map((w) => w.spans))) : '') +
      renderDependencyBreakers(breakerSnapshots) + (await registry.metrics());
  };
  // GET /v1/costs: per deployment, what ran, what it served and what that cost; and the
  // final figures of those undeployed since the gateway started.
  const costs = async (): Promise<Record<string, unknown>> => {
    const stats = mergeStats((await dp.collectStats()).map((w) => w.deployments));
    const now = Date.now();
    return {
      currency: 'usd',
      deployments: manager.list().map((d) => deploymentCost(d, stats.get(d.id), now)),
      removed: removedCosts.list(),
      removed_dropped: removedCosts.dropped,
    };
  };

  // GET /v1/stats: the figures the CLI's `top` and the dashboard show, cumulative (their
  // rates come from two polls), summed over the workers.
  const stats = async (): Promise<Record<string, unknown>> => {
    const merged = mergeStats((await dp.collectStats()).map((w) => w.deployments));
    const now = Date.now();
    const ms = (seconds: number | null): number | null => (seconds === null ? null : seconds * 1000);
    return {
      at: new Date(now).toISOString(),
      deployments: manager.list().map((d) => {
        const s = merged.get(d.id);
        const status = { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
        let requests = 0;
        for (const [code, n] of Object.entries(s?.codes ?? {})) {
          requests += n;
          const cls = `${code[0]}xx`;
          if (cls in status) status[cls as keyof typeof status] += n;
        }
        return {
          deployment: d.id, model: d.spec.model, version: d.spec.version, state: d.state,
          requests, errors: status['5xx'] + (s?.failedAfterHead ?? 0), status,
          p50_ms: ms(fineQuantile(s?.fineBuckets ?? [], 0.5)), p99_ms: ms(fineQuantile(s?.fineBuckets ?? [], 0.99)),
          ttft_p50_ms: ms(fineQuantile(s?.fineTtftBuckets ?? [], 0.5)), ttft_p99_ms: ms(fineQuantile(s?.fineTtftBuckets ?? [], 0.99)),
          input_tokens: s?.inputTokens ?? 0, output_tokens: s?.outputTokens ?? 0,
          cache_hits: s?.cacheHits ?? 0, cache_misses: s?.cacheMisses ?? 0,
          cost_usd: costUsd(d, s, now).total,
          in_flight: d.replicas.reduce((n, r) => n + slots.inflight(r.slot), 0), queued: deploymentCounters.queueLength(d.slot),
        };
      }),
    };
  };

  const control: ControlPlane = { deployments: manager, keys, traffic, metrics, costs, stats, ready: () => !draining && dp.ready, native: () => dp.native };
  const admin = new AdminServer({
    host: adminHost, port: config.admin.port, token: config.admin.token, logger, beforeReply: publishNow,
    tls: adminPair === null ? null : { cert: adminPair.cert, key: adminPair.key, minVersion: config.admin.tls!.min_version },
  });
  registerAdminRoutes(admin, { config, control, dependencies });
  let adminPort: number;
  try {
    adminPort = await admin.listen().catch((err: unknown) => {
      throw adminListenError(err, adminHost, config.admin.port) ?? err;
    });
    await manager.restore();
    restored = true;
    await traffic.restored();
    // What the config file and the store ask for must fit (rate-limit buckets): else the
    // start stops here, naming the limit. Deployments that were all ready (or failed)
    // during the restore publish no more changes.
    publishTable();
  } catch (err) {
    // A half-started gateway must not linger: workers and children would keep it alive.
    await Promise.allSettled([dp.stop(0), manager.stopAll(), admin.close(), store.close()]);
    throw err;
  }
  const tlsPorts: TlsPort[] = [];
  if (listenPair !== null) {
    tlsPorts.push({
      name: 'listen', config: config.listen.tls!, boringSsl: frontEndOf(config.listen) === 'uws', current: listenPair,
      apply: async () => {
        const failed = await dp.reloadTls();
        return failed.length === 0 ? null : failed.map((f) => `worker ${f.worker}: ${f.error}`).join('; ');
      },
    });
  }
  if (adminPair !== null) {
    tlsPorts.push({
      name: 'admin', config: config.admin.tls!, boringSsl: false, current: adminPair,
      apply: async (pair) => {
        try {
          admin.setCertificate(pair);
          return null;
        } catch (err) {
          return (err as Error).message;
        }
      },
    });
  }
  const certificates = tlsPorts.length === 0 ? null : new CertificateReloader(tlsPorts, logger);
  certificates?.start();
  logger.info({
    gateway: `${listenPair === null ? 'http' : 'https'}://${authority(config.listen.host, port)}`, admin: `${adminPair === null ? 'http' : 'https'}://${authority(adminHost, adminPort)}`, workers: config.workers,
    deployments: manager.list().length, state: store.kind,
  }, 'sluice is listening');
  autoscaler.start();

  // Several instances share Redis: each follows the changes the others make. While the
  // store's breaker is open, it said so once: no warning per poll.
  const warnUnlessBreakerOpen = (err: unknown, message: string): void => {
    if (!(err instanceof CircuitOpenError)) logger.warn({ err }, message);
  };
  // Redis came back without its data: what it holds now is not what the instances want, so
  // nothing is undeployed or dropped; this instance stores its own state again, for the
  // others to read (the first of the two loops to find the loss does it, once).
  let restoring: Promise<void> | null = null;
  const storeAgain = (err: StateLostError): Promise<void> => restoring ??= (async (): Promise<void> => {
    logger.error({ err }, 'the shared state store lost its data (Redis restarted empty?): undeploying nothing, dropping no API key or traffic; storing this instance\'s deployments, API keys and traffic again');
    const deployments = await manager.storeAgain();
    const apiKeys = await keys.storeAgain();
    const models = await traffic.storeAgain();
    await store.restored();
    logger.warn({ deployments, api_keys: apiKeys, traffic: models }, 'stored this instance\'s state in the shared store again (counts: what another instance had not stored first)');
  })().catch((e: unknown) => warnUnlessBreakerOpen(e, 'could not store this instance\'s state again: tried at the next read'))
    .finally(() => {
      restoring = null;
    });
  // A loop's failed read is said once for each reason until a read succeeds: the probes of
  // its open breaker (every reset_timeout_ms) fail as the first read did, for as long as
  // Redis is away. By message (the loop), the reason last said.
  const readFailuresSaid = new Map<string, string>();
  const onReadFailure = (err: unknown, message: string): Promise<void> | void => {
    if (err instanceof StateLostError) return storeAgain(err);
    if (err instanceof CircuitOpenError) return;
    const reason = err instanceof Error ? err.message : String(err);
    if (readFailuresSaid.get(message) === reason) return;
    readFailuresSaid.set(message, reason);
    logger.warn({ err }, message);
  };
  let reconciling = false;
  const reconcileTimer = store.kind !== 'redis' ? null : setInterval(() => {
    if (reconciling) return;
    reconciling = true;
    // Requests in flight to a deployment undeployed elsewhere get as long as at shutdown.
    Promise.all([manager.reconcile(config.shutdown.grace_ms), keys.load()])
      .then(() => readFailuresSaid.delete('could not read the shared desired state'))
      .catch((err: unknown) => onReadFailure(err, 'could not read the shared desired state'))
      .finally(() => {
        reconciling = false;
      });
  }, RECONCILE_INTERVAL_MS);
  reconcileTimer?.unref();
  let following = false;
  const trafficTimer = store.kind !== 'redis' ? null : setInterval(() => {
    if (following) return;
    following = true;
    traffic.follow()
      .then(() => readFailuresSaid.delete('could not read the shared traffic'))
      .then(() => counts.publish(traffic.countedRollouts()))
      .catch((err: unknown) => onReadFailure(err, 'could not read the shared traffic'))
      .finally(() => {
        following = false;
      });
  }, TRAFFIC_FOLLOW_INTERVAL_MS);
  trafficTimer?.unref();

  let shuttingDown: Promise<void> | null = null;
  let drainDelayOver = false;
  let endDrainDelay: (() => void) | null = null;
  const shutdownSequence = async (signal: string): Promise<void> => {
    const started = Date.now();
    const { drain_delay_ms: delayMs, grace_ms: graceMs } = config.shutdown;
    draining = true;
    certificates?.stop();
    autoscaler.stop();
    await traffic.stop();
    // An instance on its way out starts nothing the shared desired state asks for.
    if (reconcileTimer !== null) clearInterval(reconcileTimer);
    if (trafficTimer !== null) clearInterval(trafficTimer);
    await dp.drain();
    logger.info({ signal, drain_delay_ms: delayMs, grace_ms: graceMs }, 'draining');
    if (!drainDelayOver) await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      endDrainDelay = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    drainDelayOver = true;
    const { cut, terminated } = await dp.stop(graceMs, (inFlight) => logger.info({ in_flight: inFlight }, 'stopped accepting'));
    if (cut > 0 || terminated > 0) logger.warn({ cut, terminated_workers: terminated, grace_ms: graceMs }, 'grace period over: requests still in flight were cut');
    else logger.info('drained');
    // The admin API goes before the model servers: a deployment it started now would outlive us.
    await admin.close();
    await manager.stopAll();
    logger.info('model servers stopped');
    await store.close();
    logger.info({ ms: Date.now() - started }, 'stopped');
  };

  return {
    config, port, adminPort, manager,
    reloadCertificates: certificates === null ? null : (reason) => certificates.check(reason, true),
    shutdown(signal: string): Promise<void> {
      if (shuttingDown === null) {
        shuttingDown = shutdownSequence(signal);
      } else if (!drainDelayOver) {
        logger.info({ signal }, 'second signal: the drain delay ends now');
        drainDelayOver = true;
        endDrainDelay?.();
      }
      return shuttingDown;
    },
  };
}

/** The numeric leaves of a deployment's policies, as `breaker.reset_timeout_ms`-style paths. */
function policySettings(policies: PoliciesConfig): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  const walk = (node: object, prefix: string): void => {
    for (const [key, value] of Object.entries(node)) {
      if (typeof value === 'number') out.push([prefix + key, value]);
      else if (typeof value === 'boolean') out.push([prefix + key, value ? 1 : 0]);
      else if (typeof value === 'object' && value !== null) walk(value as object, `${prefix}${key}.`);
    }
  };
  walk(policies, '');
  return out;
}

/** The pair of listen.tls or admin.tls, read and checked; a ConfigError naming the file's field when it cannot serve. */
async function startupCertificate(tls: TlsConfig | undefined, section: string, boringSsl: boolean): Promise<CertificatePair | null> {
  if (tls === undefined) return null;
  const pair = await readCertificatePair(tls, boringSsl);
  if (isProblem(pair)) throw new ConfigError(`${section}.tls.${pair.field}`, pair.reason);
  return pair;
}

/**
 * An admin host that does not resolve, or is no address of this machine, is a bad value of
 * admin.host (SLUICE_ADMIN_HOST), and a port another program listens on (or one below 1024
 * without the right) a bad value of admin.port (SLUICE_ADMIN_PORT): named as the config's
 * other bad values are, not left as Node's bare `listen EADDRINUSE ...`. Null for any other
 * listen error.
 */
function adminListenError(err: unknown, host: string, port: number): ConfigError | null {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EADDRNOTAVAIL') {
    const from = process.env['SLUICE_ADMIN_HOST'] === host ? ' (set by SLUICE_ADMIN_HOST)' : '';
    return new ConfigError('admin.host', `cannot listen on ${host}: ${(err as Error).message}${from}`);
  }
  if (code === 'EADDRINUSE' || code === 'EACCES') {
    const from = process.env['SLUICE_ADMIN_PORT'] === String(port) ? ' (set by SLUICE_ADMIN_PORT)' : '';
    return new ConfigError('admin.port', `cannot listen on ${authority(host, port)}: ${(err as Error).message}${from}`);
  }
  return null;
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || host.startsWith('127.');
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}
