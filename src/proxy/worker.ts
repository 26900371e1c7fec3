// Entry of one data-plane worker thread. Each worker listens on the shared gateway port
// with a socket of its own (SO_REUSEPORT: the kernel spreads connections) and runs its own
// Gateway. The front end reading the requests is uWS (listener.ts; with TLS an SSLApp,
// replaced on `tls-reload`) or sluice's own on Node's TCP handles (front-end/, plain HTTP).

import { parentPort, workerData } from 'node:worker_threads';
import { BreakerBoard, DeploymentCounters, ReplicaLoadBoard, WorkerHolds } from '../balancer/index.js';
import { DependencyBreakers } from '../dependencies/index.js';
import { RateLimiter, RedisCache, RedisLimiter, SharedBuckets } from '../policy/index.js';
import { createLogger, LineWriter } from '../telemetry/index.js';
import { AccessLog } from './access-log.js';
import { FORWARDED_METHODS, Gateway } from './gateway.js';
import { Listener } from './listener.js';
import { HttpServer, nodeFrontEndUsable, reusePortLoadError, reusePortSocket } from './front-end/index.js';
import { probePort } from './port-probe.js';
import { setFixedHeaders } from './respond.js';
import type { RouteTableSnapshot } from './route-table.js';
import { upstreamTransport } from './upstream/index.js';
import { loadUws } from './uws.js';
import type { ToWorker, FromWorker, WorkerInit } from './messages.js';
import { authority } from '../authority.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (msg: FromWorker): void => port.postMessage(msg);
const DROP_WARNING_MS = 10_000;
/** The gateway port's address for the messages, an IPv6 one in brackets as in a URL. */
const where = authority(init.host, init.port);
/** A stalled log sink may hold a stop this much longer than the grace period, no more. */
const LOG_CLOSE_EXTRA_MS = 1000;
/** The last spans' export may hold a stop this long at most: an unreachable collector would hold it for the exporter's retries (10 s). */
const TRACES_FLUSH_MAX_MS = 3000;

const access = init.accessLog;
// Straight to stdout, from this thread: no hop through the main thread per line. The
// thread's own log lines and its access lines share the writer.
const stdout = new LineWriter({ fd: 1, bufferBytes: access.bufferBytes, maxBufferBytes: access.maxBufferBytes, flushIntervalMs: access.flushMs });
const logger = createLogger({ level: init.logLevel, writer: stdout, bindings: { worker: init.workerIndex } });
// Access lines are info lines: a log level above info silences them, as any other.
const accessLog = logger.isLevelEnabled('info') ? new AccessLog({ writer: stdout, all: access.all, sample: access.sample, worker: init.workerIndex }) : null;
// Dropped lines are counted in /metrics, and said in the log once in a while.
let droppedSaid = 0;
setInterval(() => {
  if (stdout.dropped === droppedSaid) return;
  logger.warn({ dropped: stdout.dropped - droppedSaid, dropped_total: stdout.dropped }, 'stdout is slower than the traffic: log lines dropped');
  droppedSaid = stdout.dropped;
}, DROP_WARNING_MS).unref();
// This worker's breakers around Redis and the OTLP collector (its own clients: one breaker per use per worker).
const dependencies = new DependencyBreakers(logger);
// Loaded only when on: a worker without tracing never holds the OpenTelemetry SDK.
const tracing = init.tracing === null ? null : (await import('../tracing/index.js')).startTracing(
  init.tracing.config, (problem) => logger.warn(problem, 'tracing: the OpenTelemetry SDK reports a problem'),
  (exportBatch) => dependencies.add('otlp', 'export', init.tracing!.breaker, exportBatch),
);
const NO_SPANS = { exported: 0, dropped: 0, failed: 0 };
const { uws, native, binary } = loadUws();
const sh = init.shared;
const holds = new WorkerHolds(sh.holds.buffer, init.workerIndex, sh.holds.replicaSlots, sh.holds.deploymentSlots);
const redis = init.redis;
const limiter = new RateLimiter({
  local: new SharedBuckets(sh.buckets),
  redis: redis === null ? null : new RedisLimiter({
    url: redis.url, commandTimeoutMs: redis.timeoutMs, keyPrefix: 'sluice:rl:', breakers: dependencies, breaker: redis.breakers.rate_limit,
  }),
  failOpen: init.rateLimitFailOpen,
});
const gateway = new Gateway({
  logger,
  accessLog,
  forwardedFor: init.forwardedFor,
  corsOrigins: init.corsOrigins,
  allowedHosts: init.allowedHosts,
  tls: init.tls !== null,
  shared: { inflight: new Int32Array(sh.inflight), holds, otherHolds: WorkerHolds.all(sh.holds.buffer, sh.holds.replicaSlots, sh.holds.deploymentSlots).filter((_, i) => i !== init.workerIndex), breakers: new BreakerBoard(sh.breakers), replicaLoad: new ReplicaLoadBoard(sh.replicaLoad) },
  counters: new DeploymentCounters(sh.deployments, holds.queues),
  limiter,
  sharedCache: redis === null ? null : new RedisCache({ url: redis.url, commandTimeoutMs: redis.cacheTimeoutMs, breakers: dependencies, breaker: redis.breakers.cache }),
  tracer: tracing?.tracer ?? null,
  onWake: (deployment) => post({ type: 'wake', workerIndex: init.workerIndex, deployment }),
});
gateway.publish(init.snapshot);
gateway.start();

if (init.hsts !== null) setFixedHeaders([`strict-transport-security: ${init.hsts}`]);
// Made once: each app a certificate reload builds gets the same handlers.
const handlers = FORWARDED_METHODS.map(([route, method]) => [route, gateway.handlerFor(method)] as const);
/** What the worker's front end must do, whichever it is. */
interface ClientListener {
  /** Shutdown began: responses close their connections from now on (node front end; uWS has no such switch). */
  drain?(): void;
  stopAccepting(): void;
  /** Closes every connection (idle keep-alive ones are open handles a thread must not exit over). */
  close(): void;
  /** Re-reads the certificate: why it could not, or null. */
  reload(): string | null;
}
const listener: ClientListener | null = init.frontEnd === 'node' ? await listenNode() : await startListening();

/** The first worker checks that no other process listens on the port (port-probe.ts); false, told to the control plane, when one does. */
async function portFree(): Promise<boolean> {
  if (!init.probe) return true;
  try {
    await probePort(init.host, init.port);
    return true;
  } catch (err) {
    post({ type: 'listen-failed', workerIndex: init.workerIndex, message: `cannot listen on ${where} (${(err as Error).message})` });
    return false;
  }
}

async function listenNode(): Promise<ClientListener | null> {
  const why = !nodeFrontEndUsable() ? 'this Node lacks the internal stream API the node front end reads and writes through (listen.front_end: uws works)' : reusePortLoadError();
  if (why !== null) {
    post({ type: 'listen-failed', workerIndex: init.workerIndex, message: why });
    return null;
  }
  const server = new HttpServer({
    handlers: new Map(FORWARDED_METHODS.map(([, method]) => [method, gateway.handlerFor(method)])),
    other: gateway.handleOther,
    malformed: gateway.refuseMalformed,
    idleTimeoutMs: init.clientIdleTimeoutMs,
    headTimeoutMs: init.clientHeaderTimeoutMs,
    tls: init.tls,
  });
  if (!(await portFree())) return null;
  try {
    await server.listen(reusePortSocket(init.host, init.port));
  } catch (err) {
    post({ type: 'listen-failed', workerIndex: init.workerIndex, message: `cannot listen on ${where} (${(err as Error).message})` });
    return null;
  }
  post({ type: 'listening', workerIndex: init.workerIndex, native, binary, transport: upstreamTransport });
  return { drain: () => server.drain(), stopAccepting: () => server.stopAccepting(), close: () => server.close(), reload: () => server.reload() };
}

async function startListening(): Promise<Listener | null> {
  let l: Listener;
  try {
    l = new Listener(uws, init.tls, init.host, init.port, (app) => {
      for (const [route, handler] of handlers) app[route]('/*', handler);
      app.any('/*', gateway.handleOther);
    });
  } catch (err) {
    // The control plane checked the pair just before: the files changed in between.
    post({ type: 'listen-failed', workerIndex: init.workerIndex, message: `cannot load the certificate ${init.tls?.certFile} and key ${init.tls?.keyFile} (uWS: ${String(err)})` });
    return null;
  }
  if (!(await portFree())) return l;
  if (l.listen()) post({ type: 'listening', workerIndex: init.workerIndex, native, binary, transport: upstreamTransport });
  else post({ type: 'listen-failed', workerIndex: init.workerIndex, message: `cannot listen on ${where}` });
  return l;
}

port.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'routes':
      gateway.publish(msg.snapshot as RouteTableSnapshot);
      post({ type: 'routes-applied', workerIndex: init.workerIndex, version: gateway.table.version, ready: gateway.table.ready });
      break;
    case 'stats':
      post({ type: 'stats', id: msg.id, workerIndex: init.workerIndex, deployments: gateway.stats(), unroutedRefusals: gateway.unroutedRefusals(), active: gateway.activeCount, log: { lines: stdout.lines, dropped: stdout.dropped }, spans: tracing?.spans ?? NO_SPANS, breakers: dependencies.snapshot() });
      break;
    case 'drain':
      gateway.drain();
      listener?.drain?.();
      post({ type: 'draining', workerIndex: init.workerIndex });
      break;
    case 'tls-reload':
      post({ type: 'tls-reloaded', workerIndex: init.workerIndex, error: listener === null ? 'not listening' : listener.reload() });
      break;
    case 'stop':
      // Stop accepting; requests in flight finish, then the thread exits on its own.
      listener?.stopAccepting();
      gateway.stop();
      post({ type: 'closed', workerIndex: init.workerIndex, active: gateway.activeCount });
      waitForIdle(msg.graceMs);
      break;
  }
});

function waitForIdle(graceMs: number): void {
  const deadline = Date.now() + graceMs;
  const tick = (): void => {
    if (gateway.activeCount === 0 || Date.now() > deadline) {
      post({ type: 'stopped', workerIndex: init.workerIndex, cut: gateway.activeCount });
      gateway.shutDownActive();
      // Idle keep-alive sockets are still open handles of the uWS loop; exiting over them
      // aborts the whole process (uv_loop_close with open handles), so close them first.
      listener?.close();
      // Every line and span out before the thread ends (a graceful stop loses none).
      const budget = Math.max(0, deadline - Date.now()) + LOG_CLOSE_EXTRA_MS;
      void Promise.all([stdout.close(budget), tracing?.shutdown(Math.min(budget, TRACES_FLUSH_MAX_MS))]).then(() => setImmediate(() => process.exit(0)));
    } else {
      setTimeout(tick, 20);
    }
  };
  tick();
}
