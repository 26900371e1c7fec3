// The control plane's handle on the data-plane worker threads: starts them on the shared
// gateway port, publishes route tables to all of them, gathers their stats for /metrics,
// and starts another in place of one that dies, as nginx's master does for its workers.

import { Worker } from 'node:worker_threads';
import { mergeRefusals, mergeStats, sumSpans, type Logger, type SpanCounts, type StatsSnapshot } from '../telemetry/index.js';
import { BreakerBoard, DeploymentCounters, WorkerHolds } from '../balancer/index.js';
import type { BreakerSnapshot } from '../dependencies/index.js';
import type { AccessLogSettings, LogCounts, FromWorker, RouteTableSnapshot, SharedBuffers, TlsFiles, ToWorker, WorkerInit } from '../proxy/index.js';

export interface DataPlaneOptions {
  readonly host: string;
  readonly port: number;
  readonly workers: number;
  readonly logLevel: string;
  readonly accessLog: AccessLogSettings;
  /** Append the client's address to X-Forwarded-For (config listen.forwarded_for). */
  readonly forwardedFor: boolean;
  readonly corsOrigins: readonly string[];
  /** listen.allowed_hosts, when the gateway is bound to loopback and guards its Host; null: no guard. */
  readonly allowedHosts: readonly string[] | null;
  /** What reads client requests (config listen.front_end). */
  readonly frontEnd: WorkerInit['frontEnd'];
  /** Config listen.client_idle_timeout_ms (the node front end). */
  readonly clientIdleTimeoutMs: number;
  /** Config listen.client_header_timeout_ms (the node front end). */
  readonly clientHeaderTimeoutMs: number;
  /** HTTPS on the gateway port (config listen.tls); null: plain HTTP. */
  readonly tls: TlsFiles | null;
  /** Strict-Transport-Security value of every response (config listen.hsts); null: none. */
  readonly hsts: string | null;
  readonly shared: SharedBuffers;
  readonly redis: WorkerInit['redis'];
  readonly rateLimitFailOpen: boolean;
  /** Config `tracing` when enabled (OTEL_* applied); null: no span is made. */
  readonly tracing: WorkerInit['tracing'];
  readonly logger: Logger;
  /** A worker holds a request for a hibernated deployment. */
  readonly onWake: (deployment: string) => void;
}

export interface WorkerStats {
  readonly deployments: Record<string, StatsSnapshot>;
  /** Refusals of requests no deployment owns (no route, unknown model, 405...), by code. */
  readonly unroutedRefusals: Record<string, number>;
  readonly active: number;
  readonly log: LogCounts;
  /** What became of the spans it sampled (all 0 without tracing). */
  readonly spans: SpanCounts;
  /** The worker's breakers around Redis (src/dependencies). */
  readonly breakers: BreakerSnapshot[];
}

/** How the workers' upstream connections move bytes (src/proxy/upstream/transport.ts). */
type UpstreamTransport = Extract<FromWorker, { type: 'listening' }>['transport'];

const WORKER_URL = new URL('../proxy/worker.js', import.meta.url);
/** A worker started in place of a dead one that dies again before it listens: the next try waits this long, doubling up to the most. */
const RESTART_DELAY_MS = 1000;
const RESTART_DELAY_MAX_MS = 30_000;

export class DataPlane {
  readonly #options: DataPlaneOptions;
  readonly #workers: Worker[] = [];
  /** Per worker: its thread runs (false from its unexpected exit until another listens in its place). */
  readonly #alive: boolean[] = [];
  /** Workers started in place of dead ones (sluice_data_plane_worker_restarts_total). */
  restarts = 0;
  /** Per worker: a restart waiting (it died before listening), cancelled by a stop. */
  readonly #restartTimers: Array<NodeJS.Timeout | undefined> = [];
  /**
   * The counters of dead workers (their last answers, summed), counted with the living ones':
   * left out, every counter would drop at a restart, which Prometheus reads as a reset.
   */
  #retired: WorkerStats | null = null;
  #statsSeq = 0;
  readonly #statsWaiters = new Map<number, { readonly replies: Map<number, WorkerStats>; readonly done: () => void; readonly expected: number }>();
  /**
   * Each worker's last answer to a stats request. A worker too busy to answer in time (a long
   * synchronous task: a cache key over a large body; a starved thread), or gone, is counted by
   * its last one: left out, every counter it holds would drop from /metrics for that scrape,
   * which Prometheus reads as a reset (and a rollout's counts as requests going back).
   */
  readonly #lastStats: Array<WorkerStats | undefined> = [];
  /** Whether every worker runs the native uWS binding (exported as a metric). */
  native = true;
  /** `net_socket` when any worker runs the upstream client's public-API fallback (exported as a metric). */
  upstreamTransport: UpstreamTransport = 'stream_handle';
  #stopping = false;
  /** Per worker: whether the last route table it applied says ready. */
  readonly #workerReady: boolean[] = [];
  /** Per worker: the version of the last route table it applied. */
  readonly #workerVersion: number[] = [];
  #publishedVersion = 0;
  /** The route table a worker starts with: one published while the first worker started must reach those started after it. */
  #latest: RouteTableSnapshot | null = null;
  /** routesApplied() calls waiting for every worker to reach `version`. */
  #appliedWaiters: Array<{ readonly version: number; readonly resolve: () => void }> = [];

  constructor(options: DataPlaneOptions) {
    this.#options = options;
  }

  /** Worker threads running. */
  get workerCount(): number {
    return this.#alive.filter(Boolean).length;
  }

  /**
   * Every running worker has applied a route table that says ready. The admin port's /readyz
   * asks this rather than the deployments, so that it never answers 200 while a worker would
   * still answer 503 (or route nothing) for the table it has not yet received. A dead one,
   * until another replaces it, serves nothing: the others take its connections.
   */
  get ready(): boolean {
    let running = 0;
    for (let i = 0; i < this.#workers.length; i++) {
      if (!this.#alive[i]) continue;
      if (!this.#workerReady[i]) return false;
      running++;
    }
    return running > 0;
  }

  /**
   * Starts the workers; resolves when all listen, rejects if any cannot. The first one
   * checks that no other process holds the port and listens before the others start: they
   * join its socket's SO_REUSEPORT group, which the check cannot tell from another process's.
   */
  async start(snapshot: RouteTableSnapshot): Promise<void> {
    this.#latest = snapshot;
    try {
      await this.#startWorker(0);
      const rest: Promise<void>[] = [];
      for (let i = 1; i < this.#options.workers; i++) rest.push(this.#startWorker(i));
      await Promise.all(rest);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
  }

  /**
   * Resolves when worker `i` listens, rejects if it cannot. `replacing`: started in place of
   * a dead one, which joins the port's SO_REUSEPORT group the others hold (no probe).
   */
  #startWorker(i: number, replacing = false): Promise<void> {
    const o = this.#options;
    const snapshot = this.#latest!;
    const init: WorkerInit = {
      workerIndex: i, host: o.host, port: o.port, probe: i === 0 && !replacing, logLevel: o.logLevel, accessLog: o.accessLog, forwardedFor: o.forwardedFor, corsOrigins: o.corsOrigins, allowedHosts: o.allowedHosts, frontEnd: o.frontEnd, clientIdleTimeoutMs: o.clientIdleTimeoutMs, clientHeaderTimeoutMs: o.clientHeaderTimeoutMs, tls: o.tls, hsts: o.hsts,
      shared: o.shared, redis: o.redis, rateLimitFailOpen: o.rateLimitFailOpen, tracing: o.tracing, snapshot,
    };
    const worker = new Worker(WORKER_URL, { workerData: init });
    this.#workers[i] = worker;
    this.#alive[i] = true;
    this.#workerReady[i] = snapshot.ready;
    this.#workerVersion[i] = snapshot.version;
    let listened = false;
    const listening = new Promise<void>((resolve, reject) => {
      const onMessage = (msg: FromWorker): void => {
        if (msg.type === 'listening') {
          listened = true;
          if (!msg.native) this.native = false;
          if (msg.transport === 'net_socket') this.upstreamTransport = 'net_socket';
          worker.off('message', onMessage);
          resolve();
        } else if (msg.type === 'listen-failed') {
          reject(new Error(msg.message));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`worker ${i} exited with code ${code} before listening`)));
    });
    worker.on('message', (msg: FromWorker) => this.#onMessage(msg));
    worker.on('error', (err) => o.logger.error({ err, worker: i }, 'data-plane worker failed'));
    worker.on('exit', (code) => {
      this.#alive[i] = false;
      // It routes nothing any more: no drain waits for it.
      this.#applied(i, Number.POSITIVE_INFINITY);
      // One that never listened has failed its start, which its starter deals with.
      if (this.#stopping || !listened) return;
      o.logger.fatal({ worker: i, code }, 'data-plane worker exited unexpectedly: starting another in its place');
      this.#retire(i);
      void this.#replace(i, RESTART_DELAY_MS);
    });
    return listening;
  }

  /** Starts another worker in place of dead worker `i`; one that dies before it listens is tried again after `delayMs`. */
  async #replace(i: number, delayMs: number): Promise<void> {
    this.restarts++;
    try {
      await this.#startWorker(i, true);
      this.#options.logger.warn({ worker: i }, 'data-plane worker started in place of the one that exited');
    } catch (err) {
      if (this.#stopping) return;
      // One that could not listen may still run: it is not left behind its replacement.
      void this.#workers[i]!.terminate();
      this.#alive[i] = false;
      this.#options.logger.error({ err, worker: i, retry_in_ms: delayMs }, 'data-plane worker could not be started in place of the one that exited');
      this.#restartTimers[i] = setTimeout(() => {
        this.#restartTimers[i] = undefined;
        void this.#replace(i, Math.min(2 * delayMs, RESTART_DELAY_MAX_MS));
      }, delayMs);
    }
  }

  /**
   * Gives back the in-flight slots and queue places dead worker `i` held (its requests died
   * with it), and keeps its last counters (its breakers and log writer are gone with it).
   */
  #retire(i: number): void {
    const sh = this.#options.shared;
    new WorkerHolds(sh.holds.buffer, i, sh.holds.replicaSlots, sh.holds.deploymentSlots).giveBack(new Int32Array(sh.inflight), new BreakerBoard(sh.breakers), new DeploymentCounters(sh.deployments));
    const last = this.#lastStats[i];
    this.#lastStats[i] = undefined;
    if (last === undefined) return;
    const all = this.#retired === null ? [last] : [this.#retired, last];
    this.#retired = {
      deployments: Object.fromEntries(mergeStats(all.map((w) => w.deployments))),
      unroutedRefusals: mergeRefusals(all.map((w) => w.unroutedRefusals)),
      active: 0,
      log: { lines: all.reduce((n, w) => n + w.log.lines, 0), dropped: all.reduce((n, w) => n + w.log.dropped, 0) },
      spans: sumSpans(all.map((w) => w.spans)),
      breakers: [],
    };
  }

  /** The running workers. */
  #running(): Worker[] {
    return this.#workers.filter((_, i) => this.#alive[i]);
  }

  publish(snapshot: RouteTableSnapshot): void {
    this.#publishedVersion = snapshot.version;
    this.#latest = snapshot;
    const msg: ToWorker = { type: 'routes', snapshot };
    for (const w of this.#running()) w.postMessage(msg);
  }

  /**
   * Resolves once every worker routes by the table last published (or a later one). Until
   * then a worker may still pick a replica that table removed, whatever the in-flight
   * counts say: the deployment manager waits for this before it drains replicas.
   */
  routesApplied(): Promise<void> {
    const version = this.#publishedVersion;
    if (this.#appliedBy(version)) return Promise.resolve();
    return new Promise((resolve) => this.#appliedWaiters.push({ version, resolve }));
  }

  #appliedBy(version: number): boolean {
    return this.#workerVersion.every((v) => v >= version);
  }

  #applied(worker: number, version: number): void {
    this.#workerVersion[worker] = version;
    if (this.#appliedWaiters.length === 0) return;
    const waiting = this.#appliedWaiters;
    this.#appliedWaiters = [];
    for (const w of waiting) {
      if (this.#appliedBy(w.version)) w.resolve();
      else this.#appliedWaiters.push(w);
    }
  }

  /** Every worker's counters; a worker that does not answer within the timeout is counted by its last answer. */
  collectStats(timeoutMs = 1000): Promise<WorkerStats[]> {
    const id = ++this.#statsSeq;
    return new Promise((resolve) => {
      const replies = new Map<number, WorkerStats>();
      const done = (): void => {
        clearTimeout(timer);
        this.#statsWaiters.delete(id);
        resolve(this.#withLastStats(replies));
      };
      const timer = setTimeout(done, timeoutMs);
      const running = this.#running();
      this.#statsWaiters.set(id, { replies, done, expected: running.length });
      if (running.length === 0) done();
      const msg: ToWorker = { type: 'stats', id };
      for (const w of running) w.postMessage(msg);
    });
  }

  /**
   * The replies, and the last answer of each worker that did not reply, less the deployments
   * the others no longer have (undeployed meanwhile: their series must still leave).
   */
  #withLastStats(replies: ReadonlyMap<number, WorkerStats>): WorkerStats[] {
    const out = [...replies.values()];
    const current = out.length === 0 ? null : new Set(out.flatMap((w) => Object.keys(w.deployments)));
    const stale = [...this.#lastStats.filter((last, i) => last !== undefined && !replies.has(i)) as WorkerStats[], ...(this.#retired === null ? [] : [this.#retired])];
    for (const last of stale) out.push(current === null ? last : { ...last, deployments: Object.fromEntries(Object.entries(last.deployments).filter(([d]) => current.has(d))) });
    return out;
  }

  #onMessage(msg: FromWorker): void {
    if (msg.type === 'routes-applied') {
      this.#workerReady[msg.workerIndex] = msg.ready;
      this.#applied(msg.workerIndex, msg.version);
      return;
    }
    if (msg.type === 'wake') {
      this.#options.onWake(msg.deployment);
      return;
    }
    if (msg.type !== 'stats') return;
    const stats: WorkerStats = { deployments: msg.deployments, unroutedRefusals: msg.unroutedRefusals, active: msg.active, log: msg.log, spans: msg.spans, breakers: msg.breakers };
    // A late answer too: the next request's stand-in, should the worker be busy again.
    this.#lastStats[msg.workerIndex] = stats;
    const entry = this.#statsWaiters.get(msg.id);
    if (entry === undefined) return;
    entry.replies.set(msg.workerIndex, stats);
    if (entry.replies.size === entry.expected) entry.done();
  }

  /**
   * Every worker reads the certificate files again and takes new connections with them;
   * connections open go on. Resolves with each worker's failure (it kept the certificate
   * in use); a worker that does not answer within `timeoutMs` counts as failed.
   */
  async reloadTls(timeoutMs = 5000): Promise<Array<{ worker: number; error: string }>> {
    const answers = await this.#ask({ type: 'tls-reload' }, 'tls-reloaded', timeoutMs);
    // One dead meanwhile reads the files again when another starts in its place.
    return this.#workers.flatMap((_, i) => {
      if (!this.#alive[i]) return [];
      const error = answers.has(i) ? answers.get(i)!.error : `no answer within ${timeoutMs} ms`;
      return error === null ? [] : [{ worker: i, error }];
    });
  }

  /**
   * Shutdown begins: every worker's /readyz answers 503 while it goes on serving. Resolves
   * once all of them have applied it, or after `timeoutMs` (a stuck worker delays nothing).
   */
  async drain(timeoutMs = 1000): Promise<void> {
    await this.#ask({ type: 'drain' }, 'draining', timeoutMs);
  }

  /** Posts `msg` to every worker and collects their `reply` messages by worker index, until each has answered or `timeoutMs` has passed. */
  #ask<K extends FromWorker['type']>(msg: ToWorker, reply: K, timeoutMs: number): Promise<Map<number, Extract<FromWorker, { type: K }>>> {
    const workers = this.#running();
    return new Promise((resolve) => {
      const answers = new Map<number, Extract<FromWorker, { type: K }>>();
      const onMessage = (m: FromWorker): void => {
        if (m.type !== reply) return;
        const answer = m as Extract<FromWorker, { type: K }>;
        answers.set(answer.workerIndex, answer);
        if (answers.size === workers.length) done();
      };
      const done = (): void => {
        clearTimeout(timer);
        for (const w of workers) w.off('message', onMessage);
        resolve(answers);
      };
      const timer = setTimeout(done, timeoutMs);
      for (const w of workers) w.on('message', onMessage);
      if (workers.length === 0) done();
      for (const w of workers) w.postMessage(msg);
    });
  }

  /**
   * Stops accepting (each worker closes its listen socket; `onClosed` gets the requests then
   * in flight, once all have), lets requests in flight finish for up to `graceMs`, then ends
   * the threads. `cut`: requests still in flight when the grace period ran out;
   * `terminated`: workers that did not exit by themselves.
   */
  async stop(graceMs: number, onClosed?: (inFlight: number) => void): Promise<{ cut: number; terminated: number }> {
    this.#stopping = true;
    for (const timer of this.#restartTimers) clearTimeout(timer);
    const msg: ToWorker = { type: 'stop', graceMs };
    const workers = this.#running();
    const count = workers.length;
    let closed = 0;
    let inFlight = 0;
    let cut = 0;
    let terminated = 0;
    await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
      const onMessage = (m: FromWorker): void => {
        if (m.type === 'closed') {
          inFlight += m.active;
          if (++closed === count) onClosed?.(inFlight);
        } else if (m.type === 'stopped') {
          cut += m.cut;
        }
      };
      w.on('message', onMessage);
      const timer = setTimeout(() => {
        terminated++;
        void w.terminate().then(() => resolve());
      }, graceMs + 2000);
      w.once('exit', () => {
        clearTimeout(timer);
        w.off('message', onMessage);
        resolve();
      });
      w.postMessage(msg);
    })));
    this.#workers.length = 0;
    return { cut, terminated };
  }
}
