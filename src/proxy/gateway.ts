// The data plane of one worker thread: matches a request to a route, picks a replica and
// hands the request to an Exchange. It never spawns, never writes state and never
// blocks; it reads the current RouteTable, which the control plane replaces wholesale.

import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { randomBytes } from 'node:crypto';
import { ERRORS, type ErrorCode } from '../errors/index.js';
import type { Logger } from '../telemetry/index.js';
import { Exchange, Phase } from './exchange.js';
import { readClientHead } from './headers.js';
import { endWithoutBody, writeErrorResponse } from './respond.js';
import { DeploymentRoute, RouteTable, RouteTableCompiler, type RouteTableSnapshot } from './route-table.js';

export interface GatewayOptions {
  readonly logger: Logger;
  readonly accessLog: boolean;
  /** Shared in-flight counters, one Int32 slot per replica (laid out by the control plane). */
  readonly inflight: Int32Array;
  readonly workerIndex: number;
}

// uWS reports methods in lower case; upstreams and logs want the canonical spelling.
const METHODS: Readonly<Record<string, string>> = Object.freeze({
  get: 'GET', head: 'HEAD', post: 'POST', put: 'PUT', patch: 'PATCH', delete: 'DELETE', options: 'OPTIONS',
});

const SWEEP_INTERVAL_MS = 100;

interface RejectOptions {
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  /** Close the connection after answering (the request body is not read). */
  readonly close?: boolean;
  /** A HEAD request: the answer has no body. */
  readonly head?: boolean;
  /** The deployment the request was for, when known: its metrics count the answer. */
  readonly route?: DeploymentRoute;
}
const NO_OPTIONS: RejectOptions = Object.freeze({});
const ALLOW_ANY = Object.freeze([['allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'] as const]);
const ALLOW_GET = Object.freeze([['allow', 'GET, HEAD'] as const]);
const RETRY_AFTER = Object.freeze([['retry-after', '1'] as const]);

export class Gateway {
  #table: RouteTable = RouteTable.empty;
  readonly #compiler: RouteTableCompiler;
  readonly #logger: Logger;
  readonly #accessLog: boolean;
  readonly #inflight: Int32Array;
  readonly #active: Exchange[] = [];
  readonly #idPrefix: string;
  #idSeq = 0;
  #sweepTimer: NodeJS.Timeout | null = null;
  #draining = false;

  constructor(options: GatewayOptions) {
    this.#logger = options.logger;
    this.#accessLog = options.accessLog;
    this.#inflight = options.inflight;
    this.#compiler = new RouteTableCompiler(options.inflight);
    this.#idPrefix = `${randomBytes(4).toString('hex')}${options.workerIndex.toString(36)}-`;
    this.handle = this.handle.bind(this);
  }

  get table(): RouteTable {
    return this.#table;
  }

  get activeCount(): number {
    return this.#active.length;
  }

  /** Swaps in a new route table; requests in flight keep the routes they started with. */
  publish(snapshot: RouteTableSnapshot): void {
    if (snapshot.version <= this.#table.version && this.#table !== RouteTable.empty) return;
    this.#table = this.#compiler.compile(snapshot);
  }

  start(): void {
    this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
  }

  stop(): void {
    this.#draining = true;
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer);
    for (const pool of this.#compiler.pools) pool.close();
  }

  stats(): ReturnType<RouteTableCompiler['statsSnapshot']> {
    return this.#compiler.statsSnapshot();
  }

  /** The uWS handler for every data-plane path. */
  handle(res: HttpResponse, req: HttpRequest): void {
    const url = req.getUrl();
    const method = METHODS[req.getMethod()];
    const head = readClientHead(req);
    const requestId = head.requestId !== '' ? head.requestId : this.#idPrefix + (++this.#idSeq).toString(36);
    if (method === undefined) {
      this.#reject(res, 'SLUICE_ERR_METHOD_NOT_ALLOWED', `method ${req.getMethod().toUpperCase()} is not supported`, requestId, url, { headers: ALLOW_ANY });
      return;
    }
    if (head.bad !== null) {
      this.#reject(res, 'SLUICE_ERR_BAD_REQUEST', head.bad, requestId, url, { head: method === 'HEAD' });
      return;
    }
    const segEnd = url.indexOf('/', 1);
    const segment = segEnd === -1 ? url.slice(1) : url.slice(1, segEnd);
    const matched = segment === '' ? undefined : this.#table.match(segment);
    if (matched === undefined) {
      if (url === '/healthz' || url === '/readyz') {
        this.#health(res, url, method, requestId);
        return;
      }
      this.#reject(res, 'SLUICE_ERR_NO_ROUTE', `no deployment serves ${url}`, requestId, url, { head: method === 'HEAD' });
      return;
    }
    const route = matched instanceof DeploymentRoute ? matched : matched.pick();
    if (route === undefined) {
      this.#reject(res, 'SLUICE_ERR_NO_READY_REPLICA', `no version of ${segment} has traffic weight`, requestId, url, { head: method === 'HEAD' });
      return;
    }
    const replica = route.pickReplica();
    if (replica === undefined) {
      this.#reject(res, 'SLUICE_ERR_NO_READY_REPLICA', `no ready replica for ${route.id}`, requestId, url, { headers: RETRY_AFTER, head: method === 'HEAD', route });
      return;
    }
    if (head.contentLength > route.maxBodyBytes) {
      this.#reject(res, 'SLUICE_ERR_BODY_TOO_LARGE', `request body of ${head.contentLength} bytes exceeds ${route.maxBodyBytes}`, requestId, url, { close: true, head: method === 'HEAD', route });
      return;
    }
    const rest = segEnd === -1 ? '/' : url.slice(segEnd);
    const query = req.getQuery();
    const expectBody = head.chunked || head.contentLength > 0;
    const forwardedFor = head.forwardedFor === '' ? clientAddress(res) : `${head.forwardedFor}, ${clientAddress(res)}`;
    const upstreamHead =
      `${method} ${replica.basePath}${rest}${query === undefined || query === '' ? '' : '?' + query} HTTP/1.1\r\n` +
      `host: ${replica.hostHeader}\r\n${head.headerLines}` +
      `x-forwarded-for: ${forwardedFor}\r\nx-forwarded-proto: http\r\n` +
      (head.host === '' ? '' : `x-forwarded-host: ${head.host}\r\n`) +
      `x-request-id: ${requestId}\r\n` +
      (head.chunked ? 'transfer-encoding: chunked\r\n\r\n' : head.contentLength >= 0 ? `content-length: ${head.contentLength}\r\n\r\n` : '\r\n');
    const ex = new Exchange(this, res, requestId, method, route, replica, upstreamHead, expectBody, head.chunked);
    res.onAborted(() => ex.onClientAborted());
    if (expectBody) res.onData((ab, isLast) => ex.onClientData(ab, isLast));
    Atomics.add(this.#inflight, replica.slot, 1);
    ex.activeIndex = this.#active.length;
    this.#active.push(ex);
    ex.start();
  }

  /** Bookkeeping when an exchange ends, whichever way it ended. */
  onExchangeDone(ex: Exchange): void {
    const i = ex.activeIndex;
    if (i !== -1) {
      const last = this.#active.pop()!;
      if (last !== ex) {
        this.#active[i] = last;
        last.activeIndex = i;
      }
      ex.activeIndex = -1;
      Atomics.sub(this.#inflight, ex.replica.slot, 1);
    }
    const seconds = (performance.now() - ex.startedAt) / 1000;
    ex.route.stats.record(ex.status, seconds);
    // Failures are logged even with the access log off, including a stream that failed
    // after its 200 head was sent (errorCode set, status still 200).
    if (this.#accessLog || ex.status >= 500 || ex.errorCode !== null) {
      this.#logger.info({
        request_id: ex.requestId,
        method: ex.method,
        route: ex.route.id,
        upstream: ex.replica.origin,
        status: ex.status,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        request_bytes: ex.bodyBytes,
        ...(ex.errorCode === null ? null : { error: ex.errorCode }),
      }, 'request');
    }
  }

  /** Answers with a gateway error without contacting any upstream. */
  #reject(res: HttpResponse, code: ErrorCode, message: string, requestId: string, url: string, opts: RejectOptions = NO_OPTIONS): void {
    const status = ERRORS[code].status;
    writeErrorResponse(res, status, code, message, requestId, opts.close === true, opts.headers, opts.head === true);
    // A request for a known deployment counts in its metrics whoever answered it: a 503
    // for want of a ready replica is the outage an operator's alert must see.
    opts.route?.stats.record(status, 0);
    if (this.#accessLog || status >= 500) {
      this.#logger.info({ request_id: requestId, url, status, error: code, ...(opts.route === undefined ? null : { route: opts.route.id }) }, 'request');
    }
  }

  #health(res: HttpResponse, url: string, method: string, requestId: string): void {
    if (method !== 'GET' && method !== 'HEAD') {
      this.#reject(res, 'SLUICE_ERR_METHOD_NOT_ALLOWED', `${url} accepts GET only`, requestId, url, { headers: ALLOW_GET });
      return;
    }
    const ready = url === '/healthz' || (!this.#draining && this.#table.deployments.some((d) => d.replicas.length > 0));
    const body = JSON.stringify({ status: ready ? 'ok' : 'unavailable', route_table_version: this.#table.version });
    res.cork(() => {
      res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').writeHeader('x-request-id', requestId);
      if (method === 'HEAD') endWithoutBody(res, Buffer.byteLength(body));
      else res.end(body);
    });
  }

  #sweep(): void {
    const now = performance.now();
    const active = this.#active;
    // Walk backwards: a timed-out exchange is swap-removed from the list as we go.
    for (let i = active.length - 1; i >= 0; i--) {
      const ex = active[i];
      if (ex === undefined) continue;
      const up = ex.route.upstream;
      if (ex.upstreamConnecting && ex.phase !== Phase.Uploading) {
        if (now - ex.startedAt > up.connect_timeout_ms) ex.timeout('SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT');
      } else if (ex.phase === Phase.AwaitingHead || ex.phase === Phase.Connecting) {
        if (now - ex.phaseSince > up.headers_timeout_ms) ex.timeout('SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT');
      } else if (ex.phase === Phase.Streaming) {
        if (now - ex.phaseSince > up.idle_timeout_ms) ex.timeout('SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT');
      }
    }
    const wall = Date.now();
    for (const pool of this.#compiler.pools) pool.sweep(wall);
  }
}

function clientAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
}
