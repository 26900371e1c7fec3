// The data plane of one worker thread: matches a request to a route, picks a replica and
// hands the request to an Exchange. It never spawns, never writes state and never
// blocks; it reads the current RouteTable, which the control plane replaces wholesale.

import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { ClientRequest, ClientResponse } from './front-end/client.js';
import { NoReplica, ReplicaQueue, type DeploymentCounters } from '../balancer/index.js';
import { HostGuard, HostVerdict } from '../host-guard.js';
import { errorBody, ERRORS, malformedRequestCode, ollamaErrorBody, type ErrorCode } from '../errors/index.js';
import { bearerToken, GENERATED_KEY_PREFIX, hashKey, TokenCounter, type RateLimiter, type RedisCache } from '../policy/index.js';
import type { Logger } from '../telemetry/index.js';
import type { RequestTracer } from '../tracing/index.js';
import type { AccessLog } from './access-log.js';
import type { Attempt } from './attempt.js';
import { Exchange, Phase, type BodyWaiter, type ExchangeOwner } from './exchange.js';
import { AuthFilter, authRefusal, CacheFilter, FilterChain, FilterStatus, RateLimitFilter, WWW_AUTHENTICATE } from './filters/index.js';
import { credentialLines, forwardedHeader, readClientHead, SluiceKeyIn, withCredential, withoutTraceContext, type ClientHead } from './headers.js';
import { CorsPolicy, corsHeaders, preflightHeaders } from './cors.js';
import { ollamaApi, Protocol } from '../genai-endpoints.js';
import { isListing, listedModelName, listingBody, modelEndpoint, ModelRequest, protocolErrorBody, withModel, type ModelRequestOwner } from './model-routing.js';
import { closesUnread, endWithoutBody, IDENTITY_ONLY, NO_RETRY, RETRY_AFTER, statusLine, writeJsonResponse } from './respond.js';
import { DeploymentRoute, RouteTable, RouteTableCompiler, type KeyRoute, type ReplicaRoute, type RouteTableSnapshot, type SharedState } from './route-table.js';
import { isUuid, RequestIds } from './request-id.js';
import { holdClock, monoNow, releaseClock, resyncWallClock, wallNow } from './clock.js';

export interface GatewayOptions {
  readonly logger: Logger;
  /** null: no line is logged (log level above info). */
  readonly accessLog: AccessLog | null;
  /** Append the client's address to X-Forwarded-For (one getpeername per request). */
  readonly forwardedFor: boolean;
  /** listen.cors_origins: who may call the front door from a browser; empty: no CORS. */
  readonly corsOrigins?: readonly string[];
  /** Bound to loopback: Host names allowed beside the local ones (DNS-rebinding guard, host-guard.ts); null or absent: any Host. */
  readonly allowedHosts?: readonly string[] | null;
  /** The gateway port serves HTTPS: upstream requests say `x-forwarded-proto: https`. */
  readonly tls: boolean;
  /** Memory shared with the other workers and the control plane. */
  readonly shared: SharedState;
  readonly counters: DeploymentCounters;
  readonly limiter: RateLimiter;
  /** The shared tier of the response cache; null when no Redis is configured. */
  readonly sharedCache: RedisCache | null;
  /** Asks the control plane to wake a hibernated deployment. */
  readonly onWake: (deployment: string) => void;
  /** A span per admitted request (config `tracing`); null or absent: tracing off. */
  readonly tracer?: RequestTracer | null;
}

/**
 * The time a request may take from its arrival: its deployment's total_timeout_ms, and once a
 * fallback took it, the smaller of that and the fallback's (the addressed one's is the
 * client's budget, as its rate limits are); 0: none.
 */
function totalTimeoutMs(ex: Exchange): number {
  const own = ex.route.policies.total_timeout_ms;
  const addressed = ex.addressed.policies.total_timeout_ms;
  return own === 0 ? addressed : addressed === 0 ? own : Math.min(own, addressed);
}

/** `headers` and, for an origin listen.cors_origins allows, what says its page may read the answer (error and listing paths only: it allocates). */
function withCors(origin: string | null, headers?: ReadonlyArray<readonly [string, string]>): ReadonlyArray<readonly [string, string]> | undefined {
  if (origin === null) return headers;
  return headers === undefined ? corsHeaders(origin) : [...headers, ...corsHeaders(origin)];
}

/** Upstream failures that count against a replica's breaker (4xx and client aborts never do); a refused or timed-out connect ejects it at once (#release). */
const BREAKER_FAILURES: ReadonlySet<string> = new Set<ErrorCode>([
  'SLUICE_ERR_UPSTREAM_RESET', 'SLUICE_ERR_UPSTREAM_PROTOCOL',
  'SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT', 'SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT',
  'SLUICE_ERR_TOTAL_TIMEOUT',
]);
const QUEUE_POLL_MS = 5;

/** The methods the data plane forwards, each with its uWS route registration name. */
export const FORWARDED_METHODS = Object.freeze([
  ['get', 'GET'], ['head', 'HEAD'], ['post', 'POST'], ['put', 'PUT'], ['patch', 'PATCH'], ['del', 'DELETE'], ['options', 'OPTIONS'],
] as const);
type RouteHandler = (res: ClientResponse, req: ClientRequest) => void;

const SWEEP_INTERVAL_MS = 100;

interface RejectOptions {
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  /** Close the connection after answering (the request body is not read). */
  readonly close?: boolean;
  /** The deployment the request was for, when known: its metrics count the answer. */
  readonly route?: DeploymentRoute;
  /** The body, when not the gateway's usual error body (the front door's protocol-shaped errors). */
  readonly body?: string | undefined;
  /** The client's address, when read before (a request whose body was read first). */
  readonly client?: string;
  /** The client's head, when it was read: the refusal's span is a child of its traceparent. */
  readonly head?: ClientHead;
  /** application/json unless given. */
  readonly contentType?: string;
  /** Body bytes read before the answer (a request whose body was read first). */
  readonly requestBytes?: number;
  /** When a request whose body was read first arrived (monoNow): its duration counts from then. */
  readonly arrivedAt?: number;
}
const NO_OPTIONS: RejectOptions = Object.freeze({});
const TEXT_ANSWER: RejectOptions = Object.freeze({ contentType: 'text/plain; charset=utf-8' });
const ALLOW_ANY = Object.freeze([['allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'] as const]);
const ALLOW_GET = Object.freeze([['allow', 'GET, HEAD'] as const]);
const ALLOW_POST = Object.freeze([['allow', 'POST'] as const]);

export class Gateway implements ExchangeOwner, ModelRequestOwner {
  #table: RouteTable = RouteTable.empty;
  readonly #compiler: RouteTableCompiler;
  readonly #accessLog: AccessLog | null;
  /** Every request gets an access line (not only failures): its client address is read. */
  readonly #accessAll: boolean;
  readonly #forwardedFor: boolean;
  /** The X-Forwarded-Proto line of every upstream head, made once. */
  readonly #forwardedProto: string;
  readonly #shared: SharedState;
  /** Routes again a request whose body was read for a fallback's rename (#toUpstream). */
  readonly #fallbackBody: BodyWaiter = { onWholeBody: (ex) => this.#toUpstream(ex) };
  /** The route #pickFallback found, for #switchToFallback (no pair allocated per fallback). */
  #fallbackRoute: DeploymentRoute | null = null;
  readonly #counters: DeploymentCounters;
  readonly #active: Exchange[] = [];
  /** Front-door requests whose body is being read (ModelRequest): not exchanges yet, but work a drain waits for. */
  #reading = 0;
  /** Bytes of the bodies ModelRequests are reading (limits.max_buffered_bytes). */
  #buffered = 0;
  /** Requests of this worker waiting for a replica under max_inflight, per deployment. */
  readonly #queue: ReplicaQueue<DeploymentRoute, Exchange, ReplicaRoute>;
  readonly #ids = new RequestIds();
  readonly #onWake: (deployment: string) => void;
  /** onExchangeDone, once a compressed answer has been decoded (made once, not per request). */
  readonly #doneDecoding = (ex: Exchange): void => this.onExchangeDone(ex);
  readonly #tracer: RequestTracer | null;
  /** listen.cors_origins; null: none (no Origin is read). */
  readonly #cors: CorsPolicy | null;
  /** Bound to loopback: refuses a Host that is not local (DNS rebinding); null: any Host. */
  readonly #hostGuard: HostGuard | null;
  #sweepTimer: NodeJS.Timeout | null = null;
  #draining = false;
  /**
   * Refusals of requests no deployment owns (no route, an unknown model at the front door,
   * a 405, a malformed request), by code: they have no deployment's stats to count in.
   * A Map keyed by the few codes, so that a count costs no allocation after the first.
   */
  readonly #unroutedRefusals = new Map<ErrorCode, number>();

  constructor(options: GatewayOptions) {
    this.#accessLog = options.accessLog;
    this.#accessAll = options.accessLog?.all === true;
    this.#forwardedFor = options.forwardedFor;
    this.#forwardedProto = options.tls ? 'x-forwarded-proto: https\r\n' : 'x-forwarded-proto: http\r\n';
    this.#shared = options.shared;
    this.#counters = options.counters;
    this.#onWake = options.onWake;
    this.#tracer = options.tracer ?? null;
    this.#cors = options.corsOrigins === undefined || options.corsOrigins.length === 0 ? null : new CorsPolicy(options.corsOrigins);
    this.#hostGuard = options.allowedHosts === undefined || options.allowedHosts === null ? null : new HostGuard(options.allowedHosts, true);
    const auth = new AuthFilter();
    const rateLimit = new RateLimitFilter(options.limiter, options.logger);
    const cache = new CacheFilter(options.logger);
    // Chain order: who may call, how often, then whether the answer is already known.
    this.#compiler = new RouteTableCompiler(options.shared, options.sharedCache, (d, keysLimit) => FilterChain.of([
      ...(d.policies.auth.required ? [auth] : []),
      ...(d.buckets.length > 0 || keysLimit ? [rateLimit] : []),
      ...(d.policies.cache?.enabled === true ? [cache] : []),
    ]));
    this.#queue = new ReplicaQueue({
      counters: options.counters,
      pollMs: QUEUE_POLL_MS,
      ...(options.shared.otherHolds === undefined ? {} : { heads: { own: options.shared.holds.heads, others: options.shared.otherHolds.map((h) => h.heads) } }),
      // From the newest table: a held request waits for replicas that a later table brings.
      pick: (route, ex, now) => {
        // Being undeployed, it serves those already waiting for one of its replicas, as those
        // in flight: they run until both are done (the control plane's drain waits for its
        // queue). Those waiting for it to start have nothing coming.
        const current = this.#table.deployment(route.id) ?? (route.replicas.length > 0 && this.#table.isDraining(route.id) ? route : undefined);
        if (current === undefined || (current.replicas.length === 0 && !current.holds)) {
          ex.reject(
            current === undefined ? 'SLUICE_ERR_NO_ROUTE' : 'SLUICE_ERR_NO_READY_REPLICA',
            current === undefined ? `${route.id} was removed while the request waited`
              : current.failure === null ? `${route.id} has no ready replica and none is starting` : `${route.id} could not be started: ${current.failure}`,
            RETRY_AFTER,
          );
          return NoReplica.None;
        }
        if (current.wakeFailures !== route.wakeFailures) {
          ex.reject('SLUICE_ERR_NO_READY_REPLICA', `${route.id} could not be woken: ${current.wakeError ?? 'its servers did not start'}`, RETRY_AFTER);
          return NoReplica.None;
        }
        // Held while it started, and hibernated before it was ready: the waiter wakes it again.
        this.#askWake(current);
        return current.balancer.pick(ex, now, null);
      },
      start: (route, ex, replica, now) => {
        const current = this.#table.deployment(route.id) ?? route;
        if (ex.route !== current) ex.rebind(current);
        const waited = monoNow() - ex.phaseSince;
        ex.waitedMs += waited;
        current.stats.recordQueueWait(waited / 1000);
        if (ex.trace !== null) ex.trace.waited(ex.phase === Phase.Held, ex.phaseSince);
        this.#send(ex, replica, now);
      },
    });
    this.handleOther = this.handleOther.bind(this);
    this.refuseMalformed = this.refuseMalformed.bind(this);
  }

  /**
   * The uWS handler for one method. uWS routes by method natively, so a request reaches
   * the gateway with its method known: no getCaseSensitiveMethod() call and string per request.
   */
  handlerFor(method: string): RouteHandler {
    return (res, req) => {
      holdClock();
      try {
        this.#handle(res, req, method);
      } finally {
        releaseClock();
      }
    };
  }

  /** Any other method (uWS's `any` route): 405. */
  handleOther(res: ClientResponse, req: ClientRequest): void {
    const head = readClientHead(req);
    const requestId = head.requestId !== '' ? head.requestId : this.#nextRequestId();
    const method = req.getCaseSensitiveMethod();
    this.#reject(res, 'SLUICE_ERR_METHOD_NOT_ALLOWED', `method ${method} is not supported`, requestId, method, req.getUrl(), { headers: ALLOW_ANY });
  }

  /**
   * A request the node front end could not parse, answered with its `status` (400, 413,
   * 431, 501, 505): the connection closes after it, as what follows cannot be framed.
   */
  refuseMalformed(res: ClientResponse, status: number, message: string): void {
    this.#reject(res, malformedRequestCode(status), message, this.#nextRequestId(), '', '', { close: true });
  }

  #nextRequestId(): string {
    return this.#ids.next();
  }

  get table(): RouteTable {
    return this.#table;
  }

  /** The stop's grace is over: every request still in flight ends with a gateway error (Exchange.shutDown). */
  shutDownActive(): void {
    const active = this.#active;
    // Backwards: each ended exchange is swap-removed from the list.
    for (let i = active.length - 1; i >= 0; i--) active[i]?.shutDown('SLUICE_ERR_SHUTTING_DOWN');
  }

  get activeCount(): number {
    return this.#active.length + this.#reading;
  }

  /** Swaps in a new route table; requests in flight keep the routes they started with. */
  publish(snapshot: RouteTableSnapshot): void {
    if (snapshot.version <= this.#table.version && this.#table !== RouteTable.empty) return;
    this.#table = this.#compiler.compile(snapshot);
    // Held requests go as soon as their deployment has a ready replica (or fail when it never will).
    if (this.#queue.waiting) this.#queue.drain();
  }

  start(): void {
    this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
  }

  /** Shutdown has begun: /readyz answers 503 so that balancers look elsewhere, but every request is still served. */
  drain(): void {
    this.#draining = true;
  }

  stop(): void {
    this.#draining = true;
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer);
    for (const pool of this.#compiler.pools) pool.close();
  }

  stats(): ReturnType<RouteTableCompiler['statsSnapshot']> {
    return this.#compiler.statsSnapshot();
  }

  /** The refusals no deployment counted, by code, since the worker started. */
  unroutedRefusals(): Record<string, number> {
    return Object.fromEntries(this.#unroutedRefusals);
  }

  #handle(res: ClientResponse, req: ClientRequest, method: string): void {
    const url = req.getUrl();
    const head = readClientHead(req);
    const requestId = head.requestId !== '' ? head.requestId : this.#nextRequestId();
    if (head.bad !== null) {
      this.#reject(res, 'SLUICE_ERR_BAD_REQUEST', head.bad, requestId, method, url, { head });
      return;
    }
    if (this.#hostGuard !== null && this.#hostGuard.check(head.host) === HostVerdict.Forbidden) {
      this.#reject(res, 'SLUICE_ERR_FORBIDDEN', `Host ${head.host} is not this machine: bound to loopback, the gateway answers local names only (a page whose name was rebound to 127.0.0.1); allow a name with listen.allowed_hosts`, requestId, method, url, { head });
      return;
    }
    if (hasDotSegment(url)) {
      this.#reject(res, 'SLUICE_ERR_BAD_REQUEST', 'the path has a . or .. segment (as sent or as %2e): it could leave the route it names', requestId, method, url, { head });
      return;
    }
    const segEnd = url.indexOf('/', 1);
    const segment = segEnd === -1 ? url.slice(1) : url.slice(1, segEnd);
    const matched = segment === '' ? undefined : this.#table.match(segment);
    if (matched === undefined) {
      this.#unmatched(res, req, head, method, url, requestId);
      return;
    }
    const key = this.#keyOf(head);
    let route: DeploymentRoute | undefined;
    let alias = false;
    if (matched instanceof DeploymentRoute) {
      route = matched;
    } else {
      alias = true;
      const sticky = matched.stickyHeader;
      route = sticky === null ? matched.pick() : matched.pickFor(sticky !== '' ? req.getHeader(sticky) : key?.name ?? '');
    }
    if (route === undefined) {
      this.#reject(res, 'SLUICE_ERR_NO_READY_REPLICA', `no version of ${segment} has traffic weight`, requestId, method, url, { head });
      return;
    }
    if (route.countsArrivals) this.#counters.arrive(route.slot);
    if (head.contentLength > route.maxBodyBytes) {
      this.#reject(res, 'SLUICE_ERR_BODY_TOO_LARGE', `request body of ${head.contentLength} bytes exceeds ${route.maxBodyBytes} (limits.max_body_bytes)`, requestId, method, url, { close: true, route, head });
      return;
    }
    const rest = segEnd === -1 ? '/' : url.slice(segEnd);
    const query = req.getQuery() ?? '';
    // Read only when used: the address costs a getpeername per request in uWS.
    const client = this.#forwardedFor || this.#accessAll ? clientAddress(res) : '';
    if (route.rewritesPathModel && method === 'POST') {
      const protocol = modelEndpoint(rest);
      if (protocol !== undefined) {
        // Refused before a body is read (and buffered) for a caller who may not send one.
        const refused = route.policies.auth.required ? authRefusal(route.id, route.model, key, head) : null;
        if (refused !== null) {
          const headers = refused.code === 'SLUICE_ERR_UNAUTHORIZED' ? WWW_AUTHENTICATE : undefined;
          this.#reject(res, refused.code, refused.message, requestId, method, url, { route, headers, close: closesUnread(head.contentLength, head.chunked), client, head });
          return;
        }
        new ModelRequest(this, res, head, requestId, method, url, rest, query, client, key, this.#table, protocol, route, alias).read();
        return;
      }
    }
    this.#admit(res, head, route, alias, key, requestId, method, url, rest, query, client, null, -1, false, null, null);
  }

  /**
   * The API key the client presented, when the gateway knows it (by digest): in x-api-key,
   * or else as Authorization's bearer token. Notes in head.sluiceKeys which of the two carry
   * a sluice key, known or in sluice's own format (a revoked one too): those never reach the
   * upstream, the other (a provider's credential) does.
   */
  #keyOf(head: ClientHead): KeyRoute | undefined {
    const table = this.#table;
    let key: KeyRoute | undefined;
    let sluice = 0;
    const apiKey = head.xApiKey;
    if (apiKey !== '') {
      key = table.hasKeys ? table.keyByDigest(hashKey(apiKey)) : undefined;
      if (key !== undefined || apiKey.startsWith(GENERATED_KEY_PREFIX)) sluice = SluiceKeyIn.XApiKey;
    }
    const authorization = head.authorization;
    // Without keys, only the prefix is looked at (no token string is made).
    if (authorization !== '' && (table.hasKeys || authorization.includes(GENERATED_KEY_PREFIX))) {
      const token = bearerToken(authorization);
      if (token !== '') {
        const byBearer = table.hasKeys ? table.keyByDigest(hashKey(token)) : undefined;
        if (byBearer !== undefined || token.startsWith(GENERATED_KEY_PREFIX)) sluice |= SluiceKeyIn.Authorization;
        key ??= byBearer;
      } else if (authorization.startsWith(GENERATED_KEY_PREFIX)) {
        // Not a bearer token, so no key; but a token of sluice's own format never goes upstream.
        sluice |= SluiceKeyIn.Authorization;
      }
    }
    head.sluiceKeys = sluice;
    return key;
  }

  /** A path no route's segment matches: the front door, the health endpoints, or a 404. */
  #unmatched(res: ClientResponse, req: ClientRequest, head: ClientHead, method: string, url: string, requestId: string): void {
    const protocol = modelEndpoint(url);
    // Ollama's API answers its errors as {"error":"<message>"}: its client shows nothing else.
    const ollama = url.startsWith('/api/');
    // A browser's page or extension allowed to call the front door (listen.cors_origins): its answers say it may read them.
    const cors = this.#cors === null ? null : this.#cors.allowed(head.origin);
    if (method === 'OPTIONS' && this.#cors !== null && (protocol !== undefined || isListing(url) || url === '/') && forwardedHeader(head.headerLines, 'access-control-request-method') !== '') {
      this.#preflight(res, head, cors, requestId, url, ollama);
      return;
    }
    if (protocol !== undefined) {
      if (method !== 'POST') {
        const message = `${url} accepts POST only`;
        this.#reject(res, 'SLUICE_ERR_METHOD_NOT_ALLOWED', message, requestId, method, url, { headers: withCors(cors, ALLOW_POST), head, body: ollama ? ollamaErrorBody(message, requestId) : undefined });
        return;
      }
      const client = this.#forwardedFor || this.#accessAll ? clientAddress(res) : '';
      const request = new ModelRequest(this, res, head, requestId, method, url, url, req.getQuery() ?? '', client, this.#keyOf(head), this.#table, protocol, null, false);
      request.corsOrigin = cors;
      request.read();
      return;
    }
    if (isListing(url)) {
      if (method !== 'GET' && method !== 'HEAD') {
        const message = `${url} accepts GET only`;
        this.#reject(res, 'SLUICE_ERR_METHOD_NOT_ALLOWED', message, requestId, method, url, { headers: withCors(cors, ALLOW_GET), head, body: ollama ? ollamaErrorBody(message, requestId) : undefined });
        return;
      }
      const body = listingBody(url, this.#table, this.#keyOf(head), this.#counters);
      if (body === null) {
        const message = `The model '${listedModelName(url)}' does not exist`;
        this.#reject(res, 'SLUICE_ERR_MODEL_NOT_FOUND', message, requestId, method, url, { body: protocolErrorBody(Protocol.OpenAi, 'SLUICE_ERR_MODEL_NOT_FOUND', message, requestId), head, headers: withCors(cors) });
        return;
      }
      this.#answer(res, 200, body, requestId, method, url, cors === null ? NO_OPTIONS : { headers: withCors(cors) });
      return;
    }
    if (url === '/healthz' || url === '/readyz') {
      this.#health(res, url, method, requestId);
      return;
    }
    if (url === '/' && (method === 'GET' || method === 'HEAD')) {
      // Ollama's liveness answer, which its CLI asks for (HEAD /) before any command.
      this.#answer(res, 200, 'Ollama is running', requestId, method, url, cors === null ? TEXT_ANSWER : { ...TEXT_ANSWER, headers: withCors(cors) });
      return;
    }
    const message = `no deployment serves ${url}`;
    this.#reject(res, 'SLUICE_ERR_NO_ROUTE', message, requestId, method, url, { head, body: ollama ? ollamaErrorBody(message, requestId) : undefined, headers: withCors(cors) });
  }

  /**
   * A browser's preflight for the front door: 204 with what an allowed origin may send; 403
   * to an origin listen.cors_origins does not allow (the browser then sends nothing).
   */
  #preflight(res: ClientResponse, head: ClientHead, origin: string | null, requestId: string, url: string, ollama: boolean): void {
    const refuse = (message: string): void => {
      this.#reject(res, 'SLUICE_ERR_FORBIDDEN', message, requestId, 'OPTIONS', url, { head, body: ollama ? ollamaErrorBody(message, requestId) : undefined });
    };
    if (origin === null) {
      refuse(`origin ${head.origin || '(none)'} may not call the front door from a browser (listen.cors_origins)`);
      return;
    }
    const headers = preflightHeaders(origin, head.headerLines);
    if (headers === null) {
      refuse('Access-Control-Request-Headers is not a list of header names');
      return;
    }
    const log = this.#accessLog;
    // Read before the answer: a response that has ended may not be touched.
    const client = log !== null && log.all ? clientAddress(res) : '';
    res.cork(() => {
      res.writeStatus(statusLine(204)).writeHeader('x-request-id', requestId);
      for (const [k, v] of headers) res.writeHeader(k, v);
      res.endWithoutBody();
    });
    if (log !== null && log.all) log.record(requestId, 'OPTIONS', url, client, null, null, 204, 0, null, 0, 0, 'bypass', undefined, null, null, null);
  }

  // ModelRequestOwner
  admitRead(request: ModelRequest, route: DeploymentRoute, alias: boolean, body: Buffer): void {
    // A path request counted its arrival when its path matched; one at the root counts it now.
    if (request.atRoot && route.countsArrivals) this.#counters.arrive(route.slot);
    const head = request.head;
    head.contentLength = body.length;
    head.chunked = false;
    request.exchange = this.#admit(
      request.res, head, route, alias, request.key, request.requestId, request.method, request.url, request.rest, request.query, request.client, body, request.startedAt,
      request.ollamaErrors, request.requestedModel, request.corsOrigin,
    );
  }

  reading(delta: 1 | -1): void {
    this.#reading += delta;
  }

  leftWhileRead(request: ModelRequest): void {
    const seconds = (monoNow() - request.startedAt) / 1000;
    // A path route's deployment counts it as any client that leaves; at the root no deployment was chosen yet.
    const route = request.route;
    if (route !== null) {
      route.stats.record(499, seconds);
      route.stats.clientAborts++;
    }
    const log = this.#accessLog;
    if (log !== null && log.wants(499, null)) {
      log.record(request.requestId, request.method, request.url, request.client, route?.id ?? null, null, 499, seconds, null, request.bytesRead, 0, 'bypass', request.key, null, null, null);
    }
  }

  buffer(bytes: number): boolean {
    if (bytes > 0 && this.#buffered + bytes > this.#table.maxBufferedBytes) return false;
    this.#buffered += bytes;
    return true;
  }

  refuseRead(request: ModelRequest, code: ErrorCode, message: string, close: boolean, body?: string): void {
    body ??= request.ollamaErrors ? ollamaErrorBody(message, request.requestId) : undefined;
    const headers = withCors(request.corsOrigin, code === 'SLUICE_ERR_BUFFERS_FULL' ? RETRY_AFTER : code === 'SLUICE_ERR_CONTENT_ENCODING' ? IDENTITY_ONLY : undefined);
    this.#reject(request.res, code, message, request.requestId, request.method, request.url, {
      close, body, headers, client: request.client, head: request.head, requestBytes: request.bytesRead, arrivedAt: request.startedAt,
      // A path route's request is its deployment's, whoever answers it (at the root none was chosen).
      route: request.route ?? undefined,
    });
  }

  /**
   * The request goes on to its deployment: the upstream head, the exchange, the filters.
   * `body`: the whole body, already read (ModelRequest, which passes a client abort on), since
   * `arrivedAt` (monoNow); null (and -1) when it is still to come. `ollamaErrors`: came
   * through Ollama's API at the root, so the gateway's own errors take Ollama's shape.
   * `requestedModel`: the body's model at the root, as the client spelt it (`name:tag`);
   * null: the path's segment names it. `corsOrigin`: a browser's allowed Origin at the root
   * (proxy/cors.ts). Returns the exchange.
   */
  #admit(
    res: ClientResponse, head: ClientHead, route: DeploymentRoute, alias: boolean, key: KeyRoute | undefined, requestId: string, method: string, url: string, rest: string,
    query: string, client: string, body: Buffer | null, arrivedAt: number, ollamaErrors: boolean, requestedModel: string | null, corsOrigin: string | null,
  ): Exchange {
    const expectBody = head.chunked || head.contentLength > 0;
    // Tracing off: this null check (and the same local's below) is all it costs here.
    const trace = this.#tracer === null ? null : this.#tracer.begin(head, method, url, rest, requestedModel ?? (alias ? route.model : route.id), requestId, arrivedAt);
    if (trace !== null) withoutTraceContext(head);
    const forwardedFor = !this.#forwardedFor ? head.forwardedFor : head.forwardedFor === '' ? client : `${head.forwardedFor}, ${client}`;
    let tail =
      (forwardedFor === '' ? '' : `x-forwarded-for: ${forwardedFor}\r\n`) + this.#forwardedProto +
      (head.host === '' ? '' : `x-forwarded-host: ${head.host}\r\n`) +
      `x-request-id: ${route.uuidRequestIds && !isUuid(requestId) ? this.#nextRequestId() : requestId}\r\n`;
    // In the tail: a fallback's rebuilt head keeps it.
    if (trace !== null) tail += trace.upstreamLines;
    const headRest = clientLines(route, head) + tail + framingLine(head.chunked, head.contentLength);
    const pathQuery = query === '' ? rest : `${rest}?${query}`;
    const ex = new Exchange(this, res, requestId, method, route, key, pathQuery, headRest, head.contentLength, head.chunked);
    if (body !== null) ex.bodyRead(body, arrivedAt);
    if (ollamaErrors) ex.ollamaErrors = true;
    if (corsOrigin !== null) ex.corsOrigin = corsOrigin;
    // The server's own CORS answer must not let a page the gateway's policy refuses read it (proxy/cors.ts).
    if (requestedModel !== null && head.origin !== '') ex.browserAtRoot = true;
    // The head is scratch: a copy is kept only where a fallback may need its own request head.
    if (route.fallbacks !== null) ex.fallbackHead = { head: { ...head }, tail };
    ex.path = url;
    ex.upstreamPath = rest;
    if (route.countsTokens) ex.tokenCounter = new TokenCounter(ollamaApi(rest));
    if (trace !== null) trace.attach(ex);
    ex.client = client;
    if (alias) ex.versionLine = route.versionLine;
    const filters = route.filters;
    if (filters !== null && filters.head !== null) {
      const hs = filters.head;
      for (let i = 0; i < hs.length; i++) if (hs[i]!.onHead(ex, head) === FilterStatus.Answered) return ex;
    }
    if (body === null) {
      if (res.listen !== undefined) res.listen(ex, expectBody);
      else {
        res.onAborted(() => ex.onClientAborted());
        if (expectBody) res.onData((ab, isLast) => ex.onClientData(ab, isLast));
      }
    }
    ex.activeIndex = this.#active.length;
    this.#active.push(ex);
    if (filters === null) this.#toUpstream(ex);
    else this.continueRequest(ex);
    return ex;
  }

  /**
   * Runs the request filters not run yet, then sends the request upstream; a filter that
   * paused the request calls this again (through ex.resume()) to go on.
   */
  continueRequest(ex: Exchange): void {
    if (ex.finished) return;
    const rs = ex.route.filters!.request;
    if (rs !== null) {
      for (let i = ex.nextFilter; i < rs.length; i++) {
        ex.nextFilter = i + 1;
        if (rs[i]!.onRequest(ex) !== FilterStatus.Continue) return;
      }
    }
    this.#toUpstream(ex);
  }

  /** Picks a replica and sends; or queues, or refuses when none can take the request. */
  #toUpstream(ex: Exchange): void {
    const route = ex.route;
    const retry = route.policies.retry;
    // Only breakers, the retry budget and lowest_latency read the clock (wall time: shared with other workers).
    const now = route.breaker !== null || retry.attempts > 0 || route.learnsLatency ? wallNow() : 0;
    const replica = route.balancer.pick(ex, now, null);
    if (typeof replica !== 'number') this.#send(ex, replica, now);
    else if (route.fallbacks === null) this.#noReplica(ex, replica, now);
    else {
      // Its fallbacks serve it while it wakes: without the wake, they would for good.
      this.#askWake(route);
      // A fallback's server is asked for its own model name, spliced into the body: a path
      // route's body is still arriving, so it is read first (up to the replay limit, as any
      // body a fallback gets whole); then the request is routed again.
      if (modelEndpoint(ex.upstreamPath) !== undefined && ex.awaitBody(this.#fallbackBody, retry.replay_max_bytes)) return;
      // Every replica failing (breakers open) is the 503 it would have answered: it counts it.
      if (!this.fallBack(ex, replica === NoReplica.BreakersOpen ? ERRORS.SLUICE_ERR_CIRCUIT_OPEN.status : 0)) this.#noReplica(ex, replica, now);
    }
  }

  fallBack(ex: Exchange, failed: number): boolean {
    const now = wallNow();
    const replica = this.#pickFallback(ex, now);
    if (replica === null) return false;
    // The 502/503/504 the client would have had: the deployment that failed counts it (rollout
    // analysis, alerts), as a 429/5xx it answered (divert); the fallback counts its own answer.
    if (failed !== 0) ex.route.stats.record(failed, (monoNow() - ex.startedAt) / 1000);
    if (ex.trace !== null) ex.trace.fellBack(ex.route.id, this.#fallbackRoute!.id, failed);
    this.#switchToFallback(ex, replica, now);
    return true;
  }

  divert(ex: Exchange, status: number): boolean {
    const now = wallNow();
    const replica = this.#pickFallback(ex, now);
    if (replica === null) return false;
    const failed = ex.attempt!;
    failed.abort();
    this.#release(ex, failed, null, status);
    ex.attempt = null;
    // The deployment that answered 429/5xx counts it (rollout analysis, alerts); the fallback counts its own answer.
    ex.route.stats.record(status, (monoNow() - ex.startedAt) / 1000);
    if (ex.trace !== null) ex.trace.fellBack(ex.route.id, this.#fallbackRoute!.id, status);
    this.#switchToFallback(ex, replica, now);
    return true;
  }

  /**
   * The next of the request's fallbacks that can take it, with one of its replica's slots
   * taken (the route is left in #fallbackRoute); null when none can. Each is tried once.
   */
  #pickFallback(ex: Exchange, now: number): ReplicaRoute | null {
    const fallbacks = ex.addressed.fallbacks!;
    while (ex.fallbackIndex < fallbacks.length) {
      const route = fallbacks[ex.fallbackIndex++]!;
      if (ex.bodyBytes > route.maxBodyBytes) continue;
      const replica = route.balancer.pick(ex, now, null);
      if (typeof replica !== 'number') {
        this.#fallbackRoute = route;
        return replica;
      }
      // Skipped while it sleeps, it would sleep for good: it serves those after this one once awake.
      this.#askWake(route);
    }
    return null;
  }

  #switchToFallback(ex: Exchange, replica: ReplicaRoute, now: number): void {
    const to = this.#fallbackRoute!;
    this.#fallbackRoute = null;
    ex.route.stats.fallbacks++;
    // What a fallback serves keeps it awake as much as what is addressed to it.
    if (to.countsArrivals) this.#counters.arrive(to.slot);
    // Its answer is charged to it: by its tokens too when it has token prices (or counts them).
    if (to.countsTokens) ex.tokenCounter ??= new TokenCounter();
    const saved = ex.fallbackHead!;
    let length = saved.head.contentLength;
    // The fallback's server knows its model by its own name: the body asks for that one.
    const served = modelEndpoint(ex.upstreamPath) === undefined ? null : to.servedModelJson;
    const body = served === null ? null : ex.bodyToReplay();
    const renamed = body === null ? null : withModel(body, served!);
    if (renamed !== null) {
      ex.replaceBody(renamed);
      if (!saved.head.chunked) length = renamed.length;
    }
    // A llamacpp server refuses (400) an x-request-id that is not a UUID: it gets one sluice
    // makes, as when it is addressed (the tail has the client's id only when no such server was).
    const tail = to.uuidRequestIds && !isUuid(ex.requestId) ? saved.tail.replace(`x-request-id: ${ex.requestId}\r\n`, `x-request-id: ${this.#nextRequestId()}\r\n`) : saved.tail;
    ex.switchRoute(to, clientLines(to, saved.head) + tail + framingLine(saved.head.chunked, length));
    this.#send(ex, replica, now);
  }

  /** The first attempt of a request, on the replica picked for it. */
  #send(ex: Exchange, replica: ReplicaRoute, now: number): void {
    const retry = ex.route.policies.retry;
    if (retry.attempts > 0) this.#counters.countRequest(ex.route.slot, now, retry.budget_window_ms);
    ex.start(replica);
  }

  #noReplica(ex: Exchange, why: NoReplica, now: number): void {
    const route = ex.route;
    switch (why) {
      case NoReplica.None:
        if (route.holds) this.#hold(ex, route);
        // A failed deployment stays so until it is deployed again: no SDK should retry it at once.
        else if (route.failure === null) ex.reject('SLUICE_ERR_NO_READY_REPLICA', `no ready replica for ${route.id}`, RETRY_AFTER);
        else ex.reject('SLUICE_ERR_NO_READY_REPLICA', `${route.id} failed: ${route.failure}`, NO_RETRY);
        return;
      case NoReplica.BreakersOpen: {
        const retryAfter = String(Math.max(1, Math.ceil(route.balancer.retryAfterMs(now) / 1000)));
        ex.reject('SLUICE_ERR_CIRCUIT_OPEN', `every replica of ${route.id} is failing (circuit breakers open)`, [['retry-after', retryAfter]]);
        return;
      }
      case NoReplica.Saturated:
        if (!this.#queue.add(route, ex, route.policies.queue.max_length)) {
          ex.reject('SLUICE_ERR_QUEUE_FULL', `${route.id} is at capacity and its queue is full`, RETRY_AFTER);
          return;
        }
        ex.hold(Phase.Queued);
    }
  }

  /** No replica yet, but one is coming: the request waits for it (policies.hold), and wakes a hibernated deployment. */
  #hold(ex: Exchange, route: DeploymentRoute): void {
    const hold = route.policies.hold;
    if (!this.#queue.add(route, ex, hold.max_length)) {
      ex.reject('SLUICE_ERR_QUEUE_FULL', `${route.id} is not ready yet and ${hold.max_length} requests already wait for it`, RETRY_AFTER);
      return;
    }
    ex.hold(Phase.Held);
    this.#askWake(route);
  }

  /** Asks the control plane to wake a hibernated deployment, once per route table. */
  #askWake(route: DeploymentRoute): void {
    if (route.hibernated && !route.wakeAsked) {
      route.wakeAsked = true;
      this.#onWake(route.id);
    }
  }

  /**
   * The replica refused or reset the connection before answering: try another one, when
   * the deployment's retry policy and budget allow. Returns false to let the caller fail.
   * A refused connection never reached a model, so it costs nothing of the retry budget,
   * which bounds the extra load retries put on models.
   */
  retryElsewhere(ex: Exchange, code: ErrorCode): boolean {
    const route = ex.route;
    const retry = route.policies.retry;
    const failed = ex.attempt!;
    const now = wallNow();
    this.#release(ex, failed, code, 0);
    ex.attempt = null;
    ex.failed(failed.replica);
    if (ex.attempts >= retry.attempts) return false;
    // A connect that failed reached no model: its retry adds no load the budget guards against.
    if (code !== 'SLUICE_ERR_UPSTREAM_CONNECT' && code !== 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT' && !this.#counters.tryRetry(route.slot, now, retry.budget_window_ms, retry.budget_percent)) return false;
    const next = route.balancer.pick(ex, now, failed.replica);
    if (typeof next === 'number') return false;
    // The pick excludes only the last replica: one that already failed this request earlier
    // is not "another replica" (it would get the same body a second time).
    if (ex.failedOn(next)) {
      Atomics.sub(this.#shared.inflight, next.slot, 1);
      this.#shared.holds.replicas[next.slot]!--;
      if (ex.probe && route.breaker !== null) {
        this.#shared.holds.probes[next.slot] = 0;
        this.#shared.breakers.releaseProbe(next.slot);
      }
      return false;
    }
    ex.attempts++;
    route.stats.retries++;
    if (ex.trace !== null) ex.trace.retried(ex.attempts, code, failed.replica.hostHeader);
    ex.start(next);
    return true;
  }

  /** Gives back the replica's in-flight slot and tells its breaker how the request went. */
  #release(ex: Exchange, attempt: Attempt, errorCode: ErrorCode | null, status: number): void {
    const replica = attempt.replica;
    const holds = this.#shared.holds;
    Atomics.sub(this.#shared.inflight, replica.slot, 1);
    holds.replicas[replica.slot]!--;
    if (attempt.probe) holds.probes[replica.slot] = 0;
    const breaker = ex.route.breaker;
    if (breaker === null) return;
    const board = this.#shared.breakers;
    const now = wallNow();
    // The total timeout is the client's time budget: once the replica's answer has started,
    // running out of it says nothing about the replica, whose own status is then the verdict.
    if (errorCode === 'SLUICE_ERR_TOTAL_TIMEOUT' && ex.responded) errorCode = null;
    if (errorCode === 'SLUICE_ERR_UPSTREAM_CONNECT' || errorCode === 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT') board.eject(replica.slot, now);
    else if (errorCode !== null ? BREAKER_FAILURES.has(errorCode) : status >= 500) board.onFailure(replica.slot, now, breaker);
    else if (status === 499 || errorCode !== null) {
      if (attempt.probe) board.releaseProbe(replica.slot);
    } else board.onSuccess(replica.slot, now, breaker);
  }

  /** Bookkeeping when an exchange ends, whichever way it ended. */
  onExchangeDone(ex: Exchange): void {
    // A compressed answer's last bytes may still be in zlib's hands (the thread pool): its
    // bookkeeping (in-flight slot, tokens, charge, log line) waits for them.
    const counter = ex.tokenCounter;
    if (counter !== null && counter.decoding(this.#doneDecoding, ex)) return;
    const i = ex.activeIndex;
    if (i !== -1) {
      const last = this.#active.pop()!;
      if (last !== ex) {
        this.#active[i] = last;
        last.activeIndex = i;
      }
      ex.activeIndex = -1;
    }
    const attempt = ex.attempt;
    if (attempt !== null) this.#release(ex, attempt, ex.errorCode, ex.status);
    else {
      // A wait that ended without a replica (queue or hold timeout, the client gone) is a
      // wait too: left out, the histogram would never show the longest ones.
      if (ex.queued) ex.route.stats.recordQueueWait((monoNow() - ex.phaseSince) / 1000);
      this.#queue.leave(ex.route, ex);
    }
    // The filters the request passed: the addressed deployment's, whoever served it.
    const done = ex.addressed.filters?.done;
    if (done != null) for (let i = 0; i < done.length; i++) done[i]!.onDone(ex);
    if (attempt !== null && this.#queue.waiting) this.#queue.drain();
    const now = monoNow();
    const seconds = (now - ex.startedAt) / 1000;
    const stats = ex.route.stats;
    stats.record(ex.status, seconds);
    if (ex.trace !== null) ex.trace.end(ex);
    let costUsd: number | null = null;
    // One of its replicas answered (not a cache hit, not a gateway refusal): tokens, the
    // time between its events on the gateway's side, and the charge.
    if (attempt !== null && ex.headAt >= 0) {
      // A whole answer in one piece completes the exchange before its upstream end is seen.
      const upstreamEnd = ex.upstreamEndAt >= 0 ? ex.upstreamEndAt : now;
      const tokens = ex.answerTokens;
      if (tokens !== null) {
        this.#recordTokens(ex, tokens, upstreamEnd);
        // A stream that said its server failed is a failed answer (errors, rollouts), as one cut is.
        if (tokens.reportedFailure && ex.errorCode === null && ex.status < 500) stats.failedAfterHead++;
      }
      stats.recordOverhead((ex.sentAt - ex.startedAt - ex.waitedMs + now - upstreamEnd) / 1000);
      stats.predictions++;
      const cost = ex.route.cost;
      if (cost !== null) costUsd = stats.charge(cost, tokens === null ? 0 : tokens.input, tokens === null ? 0 : tokens.output);
    }
    // Failures are logged even with the access log off, including a stream that failed
    // after its 200 head was sent (errorCode set, status still 200).
    const log = this.#accessLog;
    if (log !== null && log.wants(ex.status, ex.errorCode)) {
      log.record(
        ex.requestId, ex.method, ex.path, ex.client, ex.route.id, ex.replica?.origin ?? null, ex.status, seconds,
        // Arrival to the upstream's response head, as sluice_upstream_ttfb_seconds; null
        // when no upstream head came (cache hit, error before it).
        ex.headAt < 0 ? null : ex.headAt - ex.startedAt,
        ex.bodyBytes, ex.responseBytes, ex.cacheStatus, ex.key, ex.errorCode, costUsd, ex.upstreamRequestId,
      );
    }
  }

  #recordTokens(ex: Exchange, tokens: TokenCounter, upstreamEnd: number): void {
    const output = tokens.output;
    const stats = ex.route.stats;
    stats.recordTokens(tokens.input, output);
    if (ex.streamed && output > 1 && ex.status >= 200 && ex.status < 300 && ex.firstByteAt >= 0) {
      stats.recordTimePerOutputToken((upstreamEnd - ex.firstByteAt) / 1000 / (output - 1));
    }
  }

  /** Answers with a gateway error without contacting any upstream. */
  #reject(res: ClientResponse, code: ErrorCode, message: string, requestId: string, method: string, url: string, opts: RejectOptions = NO_OPTIONS): void {
    this.#answer(res, ERRORS[code].status, opts.body ?? errorBody(code, message, requestId), requestId, method, url, opts, code);
  }

  /** Answers with JSON the gateway made (an error, a model list), without contacting any upstream. */
  #answer(res: ClientResponse, status: number, body: string, requestId: string, method: string, url: string, opts: RejectOptions = NO_OPTIONS, code: ErrorCode | null = null): void {
    const log = this.#accessLog;
    // Sampling aside, as an exchange's: a gateway error (a 404, 405 or 413 too) is logged with the access log off.
    const logged = log !== null && (status >= 500 || code !== null || log.all);
    // Read before the answer: a response that has ended may not be touched.
    const client = logged ? opts.client ?? clientAddress(res) : '';
    const bytes = writeJsonResponse(res, status, body, requestId, opts.close === true, opts.headers, method === 'HEAD', 'bypass', opts.contentType);
    // A request for a known deployment counts in its metrics whoever answered it: a 503
    // for want of a ready replica is the outage an operator's alert must see.
    // Answered inside the handler, the duration is nil; after reading the body, that time.
    const seconds = opts.arrivedAt === undefined ? 0 : (monoNow() - opts.arrivedAt) / 1000;
    const stats = opts.route?.stats;
    if (stats !== undefined) {
      stats.record(status, seconds);
      if (code !== null) stats.refused(code);
    } else if (code !== null) {
      this.#unroutedRefusals.set(code, (this.#unroutedRefusals.get(code) ?? 0) + 1);
    }
    if (logged) log.record(requestId, method, url, client, opts.route?.id ?? null, null, status, seconds, null, opts.requestBytes ?? 0, bytes, 'bypass', undefined, code, null, null);
    if (code !== null) this.#tracer?.refused(opts.head ?? null, method, url, status, code, requestId, opts.route?.id ?? null);
  }

  #health(res: ClientResponse, url: string, method: string, requestId: string): void {
    if (method !== 'GET' && method !== 'HEAD') {
      this.#reject(res, 'SLUICE_ERR_METHOD_NOT_ALLOWED', `${url} accepts GET only`, requestId, method, url, { headers: ALLOW_GET });
      return;
    }
    const ready = url === '/healthz' || (!this.#draining && this.#table.ready);
    const body = JSON.stringify({ status: ready ? 'ok' : 'unavailable', route_table_version: this.#table.version });
    res.cork(() => {
      res.writeStatus(statusLine(ready ? 200 : 503)).writeHeader('content-type', 'application/json').writeHeader('x-request-id', requestId).writeHeader('x-sluice-cache', 'bypass');
      if (method === 'HEAD') endWithoutBody(res, Buffer.byteLength(body));
      else res.end(body);
    });
  }

  #sweep(): void {
    resyncWallClock();
    const now = performance.now();
    const active = this.#active;
    // Walk backwards: a timed-out exchange is swap-removed from the list as we go.
    for (let i = active.length - 1; i >= 0; i--) {
      const ex = active[i];
      if (ex === undefined) continue;
      const up = ex.route.upstream;
      const total = totalTimeoutMs(ex);
      if (ex.progress !== ex.sweptProgress) {
        ex.sweptProgress = ex.progress;
        ex.sweptAt = now;
      }
      const still = now - ex.sweptAt;
      if (total > 0 && now - ex.startedAt > total) {
        ex.timeout('SLUICE_ERR_TOTAL_TIMEOUT');
      } else if (ex.phase === Phase.Queued) {
        if (now - ex.phaseSince > ex.route.policies.queue.max_wait_ms) ex.reject('SLUICE_ERR_QUEUE_TIMEOUT', `waited ${ex.route.policies.queue.max_wait_ms} ms for a free replica of ${ex.route.id}`, RETRY_AFTER);
      } else if (ex.phase === Phase.Held) {
        const hold = ex.route.policies.hold;
        if (now - ex.phaseSince > hold.max_wait_ms) ex.reject('SLUICE_ERR_NOT_READY_TIMEOUT', `${ex.route.id} had no ready replica within ${hold.max_wait_ms} ms`, RETRY_AFTER);
        else if (hold.heartbeat_ms > 0) ex.heartbeat(now, hold.heartbeat_ms);
      } else if (ex.awaitingConnection) {
        // The gateway's own limit (upstream.max_connections), not the replica failing: a queue's wait.
        const wait = ex.route.policies.queue.max_wait_ms;
        if (still > wait) ex.reject('SLUICE_ERR_QUEUE_TIMEOUT', `waited ${wait} ms for one of the ${up.max_connections} connections to a replica of ${ex.route.id} (upstream.max_connections)`, RETRY_AFTER);
      } else if (ex.upstreamConnecting) {
        if (still > up.connect_timeout_ms) ex.connectTimedOut();
      } else if (ex.phase === Phase.AwaitingHead || ex.phase === Phase.Connecting) {
        if (still > up.headers_timeout_ms) ex.timeout('SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT');
      } else if (ex.phase === Phase.Streaming) {
        // Behind, the upstream is paused for the client (a drain restarts the timer): the idle time is the client's.
        if (still > up.idle_timeout_ms) {
          if (ex.behind >= 0) ex.clientStalled();
          else ex.timeout('SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT');
        }
      }
    }
    const wall = Date.now();
    for (const pool of this.#compiler.pools) pool.sweep(wall);
  }
}

/**
 * A `.` or `..` segment, as sent or percent-encoded (`%2e`): routed by its first segment,
 * the rest of such a path goes to the replica, which may resolve it (most servers do) to a
 * path outside the deployment's URL, e.g. another deployment's on the same host. Refused,
 * as nginx refuses one that climbs above the root. Most paths hold neither `.` nor `%`.
 */
function hasDotSegment(path: string): boolean {
  if (path.indexOf('.') === -1 && path.indexOf('%') === -1) return false;
  for (const segment of path.split('/')) {
    if (segment.length > 6 || segment === '') continue;
    const plain = segment.replace(/%2e/gi, '.');
    if (plain === '.' || plain === '..') return true;
  }
  return false;
}

/** The request head's last line, which frames the body; the empty line that ends the head follows it. */
function framingLine(chunked: boolean, contentLength: number): string {
  return chunked ? 'transfer-encoding: chunked\r\n\r\n' : contentLength >= 0 ? `content-length: ${contentLength}\r\n\r\n` : '\r\n';
}

/**
 * The client's header lines as `route`'s upstream gets them: with the deployment's own
 * credential in place of the client's, or the client's credentials but for a sluice API
 * key, which never leaves the gateway.
 */
function clientLines(route: DeploymentRoute, head: ClientHead): string {
  const credential = route.credentialLine;
  if (credential !== null) return withCredential(head, route.credentialName, credential);
  return head.headerLines + credentialLines(head);
}

// The client address for X-Forwarded-For. The binary form costs about half of the text
// form in uWS. The last IPv4 address's text is kept: clients behind a balancer, or a
// bench, repeat it, and comparing four bytes is cheaper than any keyed lookup (a 32-bit
// key is not a small integer for V8 and would be boxed).
let lastA = -1;
let lastB = -1;
let lastC = -1;
let lastD = -1;
let lastText = '';
function clientAddress(res: ClientResponse): string {
  const ab = res.getRemoteAddress();
  if (ab.byteLength === 4) {
    const bytes = new Uint8Array(ab);
    const a = bytes[0]!;
    const b = bytes[1]!;
    const c = bytes[2]!;
    const d = bytes[3]!;
    if (d !== lastD || c !== lastC || b !== lastB || a !== lastA) {
      lastText = `${a}.${b}.${c}.${d}`;
      lastA = a;
      lastB = b;
      lastC = c;
      lastD = d;
    }
    return lastText;
  }
  return Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
}
