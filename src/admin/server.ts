// The admin HTTP server (control plane, node:http, or node:https with admin.tls: not a hot
// path). Routes are registered by path pattern; an answer is JSON, a text, or a stream
// written over time (server-sent events); errors use the gateway's error body, and a bearer
// token, when configured, is compared in constant time.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError, validate, type Field, type TlsVersion } from '../config/index.js';
import { errorBody, SluiceError } from '../errors/index.js';
import type { Logger } from '../telemetry/index.js';
import { TLS12_SUITES } from '../tls-suites.js';
import { waitAtMost } from '../wait-at-most.js';

export interface AdminRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly params: Readonly<Record<string, string>>;
  readonly requestId: string;
  readonly raw: IncomingMessage;
  /** Parsed JSON body (`{}` when empty); 400 on malformed JSON or over 1 MiB. */
  json(): Promise<Record<string, unknown>>;
}

export interface AdminReply {
  readonly status?: number;
  readonly body?: unknown;
  /** Sent as is with this content type (e.g. Prometheus text). */
  readonly text?: string;
  readonly contentType?: string;
  /**
   * A response written over time after its head (content type `text/event-stream` unless
   * given): the server ends it when the returned promise settles. It must stop when
   * `out.signal` aborts (the client went away, or the server is closing).
   */
  readonly stream?: (out: ReplyStream) => Promise<void>;
}

/** The open body of a streaming reply. */
export interface ReplyStream {
  /** Sends a chunk; false (and nothing sent) while the client has not read what it was sent: skip, never pile up. */
  write(chunk: string): boolean;
  readonly signal: AbortSignal;
}

/** A request body checked against a config schema, types as given: 400 naming the bad field otherwise. */
export function validBody<T>(schema: Field, body: Record<string, unknown>): T {
  try {
    return validate(schema, body, '', true) as T;
  } catch (err) {
    if (err instanceof ConfigError) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${err.field}: ${err.reason}`, { field: err.field });
    throw err;
  }
}

export type AdminHandler = (req: AdminRequest) => Promise<AdminReply> | AdminReply;

export interface RouteOptions {
  /** Reachable without the token (health checks). */
  readonly public?: boolean;
  /** The query parameters the route reads: any other is refused (400 naming it), as an unknown body field is. */
  readonly query?: readonly string[];
}

interface RouteDef {
  readonly method: string;
  readonly parts: readonly string[];
  readonly handler: AdminHandler;
  readonly public: boolean;
  readonly query: readonly string[];
}

/** A PEM certificate chain and its key. */
export interface AdminCertificate {
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string | null;
  /** HTTPS (config admin.tls); absent or null: plain HTTP. */
  readonly tls?: (AdminCertificate & { readonly minVersion: TlsVersion }) | null;
  readonly logger: Logger;
  /**
   * Called before each answer is written: the control plane publishes route tables in
   * batches, and a change an answer reports must reach the workers before the client can
   * send a request that relies on it.
   */
  readonly beforeReply?: () => void;
}

const MAX_BODY = 1024 * 1024;
/** What a stream may have waiting for a slow client before its writes are refused. */
const MAX_STREAM_BACKLOG = 256 * 1024;
/** How long close() lets open streams end their responses before it cuts the connections. */
const STREAM_END_MS = 1_000;

export class AdminServer {
  readonly #o: AdminServerOptions;
  readonly #routes: RouteDef[] = [];
  readonly #tokenHash: Buffer | null;
  #server: Server | HttpsServer | null = null;
  /** The same server when it is HTTPS, for setCertificate. */
  #https: HttpsServer | null = null;
  /** Streams in progress: close() aborts them, then waits (briefly) for their responses to end. */
  readonly #streams = new Map<AbortController, Promise<void>>();

  constructor(options: AdminServerOptions) {
    this.#o = options;
    this.#tokenHash = options.token === null ? null : sha256(options.token);
  }

  /** For the routes' own background work (the live feed). */
  get logger(): Logger {
    return this.#o.logger;
  }

  /** `pattern` like `/v1/deployments/:id`. */
  route(method: string, pattern: string, handler: AdminHandler, options: RouteOptions = {}): this {
    this.#routes.push({ method, parts: pattern.split('/').filter(Boolean), handler, public: options.public ?? false, query: options.query ?? [] });
    return this;
  }

  /** What is registered, patterns as given (`/v1/deployments/:id`): the API document is checked against it. */
  routes(): Array<{ readonly method: string; readonly pattern: string; readonly public: boolean; readonly query: readonly string[] }> {
    return this.#routes.map((r) => ({ method: r.method, pattern: `/${r.parts.join('/')}`, public: r.public, query: r.query }));
  }

  async listen(): Promise<number> {
    // #handle answers its own errors; one that escapes it anyway must cost its request, not the
    // process (Node exits on an unhandled rejection, and with it every worker).
    const handle = (req: IncomingMessage, res: ServerResponse): void => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#o.logger.error({ err }, 'admin request failed');
        res.destroy();
      });
    };
    const tls = this.#o.tls ?? null;
    const server = tls === null ? createServer(handle) : (this.#https = createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: tls.minVersion, ciphers: TLS12_SUITES }, handle));
    server.keepAliveTimeout = 5_000;
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.port, this.#o.host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : this.#o.port;
  }

  /** New connections get this certificate; connections open keep theirs. Throws when Node cannot use it. */
  setCertificate(pair: AdminCertificate): void {
    const tls = this.#o.tls ?? null;
    if (this.#https === null || tls === null) throw new Error('the admin port has no TLS');
    this.#https.setSecureContext({ cert: pair.cert, key: pair.key, minVersion: tls.minVersion, ciphers: TLS12_SUITES });
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    const ending = [...this.#streams.values()];
    for (const stream of this.#streams.keys()) stream.abort();
    await waitAtMost(Promise.all(ending), STREAM_END_MS);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = headerValue(req.headers['x-request-id']) ?? randomUUID();
    res.setHeader('x-request-id', requestId);
    // No page may show these answers in a frame: the dashboard framed by another site's page
    // still sends same-origin requests, which #crossSite lets through, so that page could lay
    // its own over the dashboard's buttons and have them clicked (clickjacking).
    res.setHeader('x-frame-options', 'DENY');
    res.setHeader('content-security-policy', "frame-ancestors 'none'");
    const url = targetUrl(req.url ?? '/');
    if (url === null) {
      // An absolute-form target Node's parser passes but WHATWG URL refuses (`http://[`, `//[/`).
      const e = new SluiceError('SLUICE_ERR_BAD_REQUEST', 'the request target is not a valid URL');
      res.writeHead(e.status, { 'content-type': 'application/json', connection: 'close' });
      res.end(errorBody(e.code, e.message, requestId, e.details));
      return;
    }
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean).map(safeDecode);
    // The methods of the routes whose path matches: a 405 must list them in Allow (RFC 9110 15.5.6).
    const allowed = new Set<string>();
    let found: { def: RouteDef; params: Record<string, string> } | null = null;
    for (const def of this.#routes) {
      const params = matchParts(def.parts, parts);
      if (params === null) continue;
      allowed.add(def.method);
      if (def.method === 'GET') allowed.add('HEAD');
      if (def.method === method || (method === 'HEAD' && def.method === 'GET')) {
        found = { def, params };
        break;
      }
    }
    try {
      if (found === null) {
        if (allowed.size === 0) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no admin endpoint ${url.pathname}`);
        res.setHeader('allow', [...allowed].join(', '));
        throw new SluiceError('SLUICE_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${url.pathname}`);
      }
      if (!found.def.public && this.#tokenHash === null) {
        const relayed = relayedBy(req);
        if (relayed !== null) throw new SluiceError('SLUICE_ERR_FORBIDDEN', `without admin.token the admin API answers this machine's own clients only, not a request a proxy relays (it carries ${relayed}): a proxy or a remote deployment pointed here would open it to the network; set admin.token (or SLUICE_ADMIN_TOKEN) to reach it that way`);
      }
      if (!found.def.public) {
        const refused = this.#crossSite(req);
        if (refused !== null) throw new SluiceError('SLUICE_ERR_FORBIDDEN', `the admin API answers no request a browser sends from another site's page or to another name (${refused})`);
      }
      if (!found.def.public && !this.#authorized(req)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new SluiceError('SLUICE_ERR_UNAUTHORIZED', 'admin endpoints need Authorization: Bearer <token>');
      }
      checkQuery(url.searchParams, found.def, method, url.pathname);
      const areq: AdminRequest = {
        method, path: url.pathname, query: url.searchParams, params: found.params, requestId, raw: req,
        json: () => readJson(req),
      };
      const reply = await found.def.handler(areq);
      this.#o.beforeReply?.();
      const status = reply.status ?? 200;
      if (reply.stream !== undefined) {
        this.#o.logger.debug({ request_id: requestId, method, path: url.pathname, status }, 'admin stream');
        await this.#stream(req, res, status, reply.contentType ?? 'text/event-stream; charset=utf-8', reply.stream);
        return;
      }
      if (reply.text !== undefined) {
        res.writeHead(status, { 'content-type': reply.contentType ?? 'text/plain; charset=utf-8' });
        res.end(reply.text);
      } else {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(reply.body === undefined ? '' : JSON.stringify(reply.body));
      }
      this.#o.logger.debug({ request_id: requestId, method, path: url.pathname, status }, 'admin request');
    } catch (err) {
      this.#o.beforeReply?.();
      const e = asCodedError(err);
      if (e.status >= 500) this.#o.logger.error({ request_id: requestId, err }, 'admin request failed');
      if (!res.headersSent) {
        res.writeHead(e.status, { 'content-type': 'application/json', ...e.headers });
        res.end(errorBody(e.code, e.message, requestId, e.details));
      } else {
        res.destroy();
      }
    }
  }

  async #stream(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: NonNullable<AdminReply['stream']>): Promise<void> {
    // no-transform and X-Accel-Buffering: a proxy in front must pass each event on as it comes.
    res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store, no-transform', 'x-accel-buffering': 'no' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.flushHeaders();
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    const out: ReplyStream = {
      write: (chunk) => {
        if (ac.signal.aborted || res.writableLength > MAX_STREAM_BACKLOG) return false;
        res.write(chunk);
        return true;
      },
      signal: ac.signal,
    };
    const done = body(out)
      .catch((err: unknown) => this.#o.logger.error({ err }, 'admin stream failed'))
      .then(() => new Promise<void>((resolve) => {
        if (res.writableFinished || res.destroyed) return resolve();
        res.once('finish', resolve).once('close', resolve);
        res.end();
      }));
    this.#streams.set(ac, done);
    try {
      await done;
    } finally {
      this.#streams.delete(ac);
    }
  }

  /**
   * Why a request is one a browser sent for a page it should not act for, or null. A page of
   * any site can make the browser POST here (a "simple" request needs no preflight, and the
   * body is read whatever its content type): without a token that is a deploy of a command.
   * Browsers mark such requests (Sec-Fetch-Site, and Origin on all but top-level GETs); curl
   * and the CLI send neither. A page reached by DNS rebinding is same-origin by the browser's
   * reckoning, but it names its own host: without a token, only an IP address, localhost or
   * admin.host is this server (with one, the page has no token to send).
   */
  #crossSite(req: IncomingMessage): string | null {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return `Sec-Fetch-Site: ${site}`;
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req)) return `Origin: ${origin}`;
    if (this.#tokenHash === null && req.headers.host !== undefined && !this.#ownName(req.headers.host)) return `Host: ${req.headers.host}`;
    return null;
  }

  #ownName(hostHeader: string): boolean {
    const host = hostName(hostHeader);
    return isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost') || host === this.#o.host.toLowerCase();
  }

  #authorized(req: IncomingMessage): boolean {
    if (this.#tokenHash === null) return true;
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    // Hashing both sides gives equal lengths, so timingSafeEqual never leaks the length.
    return m !== null && timingSafeEqual(sha256(m[1]!.trim()), this.#tokenHash);
  }
}

interface CodedError {
  readonly code: string;
  readonly status: number;
  readonly message: string;
  readonly details?: Record<string, unknown> | undefined;
  readonly headers?: Record<string, string>;
}

/** Any error with a SLUICE_ERR_* code and a status (SluiceError, RegistryError, ConfigError). */
function asCodedError(err: unknown): CodedError {
  const e = err as Partial<CodedError> | null;
  if (e !== null && typeof e === 'object' && typeof e.code === 'string' && e.code.startsWith('SLUICE_ERR_') && typeof e.status === 'number') {
    return e as CodedError;
  }
  return new SluiceError('SLUICE_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
}

/**
 * A misspelt parameter (`?wiat=true`) must not pass for an absent one (an answer at once),
 * nor one given twice be read as its first value. The public endpoints (probes, the docs,
 * the dashboard) read none, and a probe or a browser may add one (a cache buster): ignored.
 */
function checkQuery(query: URLSearchParams, def: RouteDef, method: string, path: string): void {
  if (def.public) return;
  const names = [...query.keys()];
  const unknown = names.find((n) => !def.query.includes(n));
  if (unknown !== undefined) {
    const takes = def.query.length === 0 ? 'takes no query parameter' : `takes ${def.query.join(', ')}`;
    throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${unknown}: unknown query parameter (${method} ${path} ${takes})`, { field: unknown });
  }
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${twice}: given more than once`, { field: twice });
}

// What a proxy adds to a request it relays: the gateway's own data plane sends the first two
// to every upstream, a remote deployment whose URL is this admin API's included.
const RELAY_HEADERS = ['x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-for', 'forwarded', 'via'] as const;

/**
 * The name of the header that says a proxy relayed `req`, or null. A tokenless admin API is
 * safe only because it listens on loopback; a proxy on the machine (the gateway itself,
 * through a `remote` URL naming this port) would be the network's way in.
 */
function relayedBy(req: IncomingMessage): string | null {
  for (const name of RELAY_HEADERS) if (req.headers[name] !== undefined) return name;
  return null;
}

/** The Origin is the page of this very server: its host (and port) as the request names them, directly or through a proxy. */
function sameOrigin(origin: string, req: IncomingMessage): boolean {
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    // `null` (a sandboxed frame, a file:// page) or garbage: no site of ours.
    return false;
  }
  const forwarded = headerValue(req.headers['x-forwarded-host'])?.split(',')[0]?.trim().toLowerCase();
  return host === req.headers.host?.toLowerCase() || host === forwarded;
}

/** The Host header without its port, IPv6 without brackets, lower case. */
function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return h.slice(1, end === -1 ? undefined : end);
  }
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function headerValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && s.length > 0 && s.length <= 200 ? s : undefined;
}

/** The request target as a URL; null when it is none (the client gets a 400). */
function targetUrl(target: string): URL | null {
  try {
    return new URL(target, 'http://admin');
  } catch {
    return null;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function matchParts(pattern: readonly string[], parts: readonly string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = parts[i]!;
    else if (p !== parts[i]) return null;
  }
  return params;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new SluiceError('SLUICE_ERR_BODY_TOO_LARGE', `admin request bodies are limited to ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  const coding = req.headers['content-encoding'];
  if (coding !== undefined && coding.toLowerCase() !== 'identity') {
    throw new SluiceError('SLUICE_ERR_CONTENT_ENCODING', `the request body is sent with Content-Encoding: ${coding}, which the admin API does not decode: send it uncompressed`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new SluiceError('SLUICE_ERR_BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SluiceError('SLUICE_ERR_BAD_REQUEST', 'body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}
