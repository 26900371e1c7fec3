// The simulator's HTTP server: one dispatch function in front of a route table chosen by
// protocol, plus request accounting and immediate cancellation detection.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Route, SimContext } from './context.js';
import { controlRoute, runControl } from './control.js';
import { Exchange, send, sendForcedStatus, sendStyledError } from './http.js';
import { HostGuard, HostVerdict, isLoopbackAddress } from '../host-guard.js';
import { METRICS_PATH, sendMetrics } from './metrics.js';
import { mlflowNotFound, mlflowRoutes } from './mlflow.js';
import { ModelSet } from './models.js';
import { ollamaNotFound, ollamaRoutes } from './ollama.js';
import { isModelPath, MODEL_ROUTE, openaiNotFound, openaiRoutes } from './openai.js';
import { pickTunables, type SimOptions, type Tunables } from './options.js';
import { SimStats } from './stats.js';
import { afterDelay, HANG } from './stream.js';

const kExchange = Symbol('sim.exchange');
const kSim = Symbol('sim.server');
type Res = ServerResponse & { [kExchange]?: Exchange; [kSim]?: Sim };

// Longer than the idle timeout of any pooling client (undici 4 s, nginx 60 s), so the
// simulator never closes a pooled connection under a gateway that is about to reuse it.
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export class Sim implements SimContext {
  readonly options: SimOptions;
  readonly stats = new SimStats();
  readonly models: ModelSet;
  readonly loaded = new Map<string, number>();
  readonly server: Server;
  #tunables: Tunables;
  readonly #routes: Map<string, Route>;
  readonly #modelRoute: Route | null;
  readonly #notFound: (ex: Exchange, methodNotAllowed: boolean) => void;
  readonly #guard: HostGuard | null;

  constructor(options: SimOptions) {
    this.options = options;
    this.#tunables = pickTunables(options);
    this.models = new ModelSet(options.models, new Date());
    switch (options.protocol) {
      case 'ollama':
        // Real Ollama serves its OpenAI-compatible routes next to the native ones.
        this.#routes = new Map([...ollamaRoutes(), ...openaiRoutes()]);
        this.#modelRoute = MODEL_ROUTE;
        this.#notFound = ollamaNotFound;
        this.#guard = isLoopbackAddress(options.host) ? new HostGuard() : null;
        break;
      case 'openai':
        this.#routes = openaiRoutes();
        this.#modelRoute = MODEL_ROUTE;
        this.#notFound = openaiNotFound;
        this.#guard = null;
        break;
      case 'mlflow':
        this.#routes = mlflowRoutes();
        this.#modelRoute = null;
        this.#notFound = mlflowNotFound;
        this.#guard = null;
        break;
    }
    this.server = createServer({ noDelay: true, keepAlive: true }, this.#onRequest.bind(this));
    this.server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    this.server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1000;
    // Uploads and hung requests may legitimately take longer than Node's 5-minute default.
    this.server.requestTimeout = 0;
  }

  get tunables(): Tunables {
    return this.#tunables;
  }

  configure(next: Tunables): void {
    this.#tunables = next;
  }

  logEvent(event: Record<string, unknown>): void {
    if (this.options.logEvents) process.stderr.write(JSON.stringify(event) + '\n');
  }

  crash(ex: Exchange, tokensSent: number): void {
    this.logEvent({ event: 'crash', request_id: ex.requestId, path: ex.path, tokens_sent: tokensSent });
    // res.write() corks the socket until the next tick; exit after that flush so the client
    // really receives the N tokens before the connection dies.
    setImmediate(() => process.exit(1));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      // Hung and streaming requests would otherwise keep close() waiting forever.
      this.server.closeAllConnections();
    });
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const ex = new Exchange(req, res, path, q === -1 ? '' : url.slice(q + 1));

    if (path.startsWith('/_sim/')) {
      const route = controlRoute(path);
      ex.counted = route?.counted ?? false;
      this.#track(ex);
      runControl(this, ex, route);
      return;
    }

    const t = this.#tunables;
    // Introspection like /_sim/stats: not counted, and answered even under `hang`, so a
    // balancer can watch hung requests pile up in the running gauge.
    if (path === METRICS_PATH && t.metrics !== 'none' && req.method === 'GET') {
      sendMetrics(this, res, t.metrics);
      return;
    }
    this.#track(ex);
    if (t.hang) {
      ex.job = HANG;
      return;
    }
    const method = req.method ?? 'GET';
    if (this.#guard !== null) {
      const verdict = this.#guard.check(req.headers.host);
      if (verdict === HostVerdict.Forbidden) {
        send(res, 403, null, '');
        return;
      }
      if (verdict === HostVerdict.AllowedByName && method === 'OPTIONS') {
        send(res, 204, null, '');
        return;
      }
    }
    const route = this.#routes.get(path) ?? (this.#modelRoute !== null && isModelPath(path) ? this.#modelRoute : undefined);
    if (route === undefined) {
      this.#notFound(ex, false);
      return;
    }
    const handler = route.methods[method];
    if (handler === undefined) {
      this.#notFound(ex, true);
      return;
    }
    ex.style = route.style;
    if (route.generation) {
      // Injected failures happen before any byte of the body is read, like a server that
      // rejects a request up front (after status_delay_ms, one that gave up on it).
      if (t.status !== 0) {
        this.stats.errorsInjected++;
        const status = t.status;
        afterDelay(ex, t.statusDelayMs, (e) => sendForcedStatus(e, status));
        return;
      }
      if (t.errorRate > 0 && Math.random() < t.errorRate) {
        this.stats.errorsInjected++;
        sendStyledError(ex, 500, 'simulated failure');
        return;
      }
    }
    try {
      handler(this, ex);
    } catch (err) {
      this.logEvent({ event: 'error', path, message: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) sendStyledError(ex, 500, 'internal simulator error');
      else res.destroy();
    }
  }

  #track(ex: Exchange): void {
    const res = ex.res as Res;
    res[kExchange] = ex;
    if (ex.counted) {
      this.stats.requests++;
      this.stats.active++;
    }
    res[kSim] = this;
    res.on('close', onResponseClose);
  }

  /** Called once per response when its connection side is done, finished or not. */
  responseClosed(ex: Exchange): void {
    if (!ex.counted) {
      if (!ex.res.writableEnded) ex.job?.abort();
      return;
    }
    this.stats.active--;
    if (ex.res.writableEnded) {
      this.stats.completed++;
      return;
    }
    // The client went away before the response ended: stop the work now, not at the next
    // timer tick, so a gateway's abort is visible here within milliseconds.
    const job = ex.job;
    job?.abort();
    const record = { request_id: ex.requestId, path: ex.path, at_ms: Date.now(), tokens_sent: job?.tokensSent ?? 0 };
    this.stats.addCancellation(record);
    this.logEvent({ event: 'cancelled', ...record });
  }
}

// A module-level listener (`this` is the response) instead of a closure per request.
function onResponseClose(this: Res): void {
  const ex = this[kExchange];
  const sim = this[kSim];
  if (ex !== undefined && sim !== undefined) sim.responseClosed(ex);
}
