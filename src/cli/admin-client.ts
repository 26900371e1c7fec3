// The one way admin commands talk to the gateway: builds URLs under the admin base URL,
// sends the bearer token, and turns error answers and network failures into CliErrors
// whose message says what happened and what to do. The token is never part of a message.

import { AdminApiError, CliError, usageError } from './errors.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8081';
const DEFAULT_TIMEOUT_MS = 60_000;
// The gateway port's own answers to the admin paths the CLI asks for: no route there, and
// its model list's paths (/v1/models/...) take GET only. The admin API never answers them
// to a request of this CLI.
const GATEWAY_PORT_CODES: ReadonlySet<string> = new Set(['SLUICE_ERR_NO_ROUTE', 'SLUICE_ERR_METHOD_NOT_ALLOWED']);

export interface RequestOptions {
  readonly body?: unknown;
  readonly query?: Record<string, string | number | boolean | undefined>;
  /** How long to wait for the answer (undeploy waits for the drain). */
  readonly timeoutMs?: number;
  /**
   * A field the admin API's answer always has, where the gateway port answers the same path
   * too (GET /v1/models: an OpenAI model list): an answer without it is another server's.
   */
  readonly expect?: string;
  /** Ends the wait early (the user quit a live view): the request rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export class AdminClient {
  /** The base URL as shown in messages: without any user:password part. */
  readonly shownUrl: string;
  readonly #base: URL;
  readonly #token: string | null;

  constructor(baseUrl: string, token: string | null) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw usageError(`--admin-url: '${baseUrl}' is not a URL (e.g. ${DEFAULT_ADMIN_URL})`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usageError(`--admin-url: '${baseUrl}' must be an http:// or https:// URL`);
    url.username = '';
    url.password = '';
    url.search = '';
    url.hash = '';
    // A base with a path (behind a proxy at /sluice/) keeps it: paths are appended to it.
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    this.#base = url;
    this.#token = token === '' ? null : token;
    this.shownUrl = url.href.replace(/\/$/, '');
  }

  get<T>(path: string, opts?: RequestOptions): Promise<T> {
    return this.request<T>('GET', path, opts);
  }

  /** `path` starts with `/`; each segment taken from user input must already be encoded (see `seg`). */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(path.slice(1), this.#base);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token !== null) headers.authorization = `Bearer ${this.#token}`;
    let payload: string | undefined;
    if (opts.body !== undefined) {
      payload = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let res: Response;
    let text: string;
    try {
      const timeout = AbortSignal.timeout(timeoutMs);
      res = await fetch(url, { method, headers, body: payload, signal: opts.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout]) });
      text = await res.text();
    } catch (err) {
      if (opts.signal?.aborted === true) throw opts.signal.reason;
      throw this.#unreachable(err, timeoutMs);
    }
    const body = parseJson(text);
    if (res.status >= 200 && res.status < 300) {
      // Every answer of the admin API to this CLI is a JSON object.
      if (!isObject(body) || (opts.expect !== undefined && !(opts.expect in body))) throw this.#notAdminApi(method, path, res, body);
      return body as T;
    }
    throw this.#refused(method, path, res, body);
  }

  /** Something answered, but not sluice's admin API: as good as nothing for this CLI (exit 3). */
  #notAdminApi(method: string, path: string, res: Response, body: unknown): CliError {
    const code = errorCode(body);
    const what = code !== null ? code : isObject(body) ? 'JSON of another shape' : `${res.headers.get('content-type')?.split(';')[0] ?? 'a body'}, not JSON`;
    const hint = code !== null && GATEWAY_PORT_CODES.has(code) ? 'this looks like sluice\'s gateway port: the admin API has its own, admin.port, 8081 by default; ' : '';
    return new CliError('SLUICE_CLI_NOT_ADMIN_API', `${this.shownUrl} is not sluice's admin API: ${method} ${path} answered ${res.status} with ${what} (${hint}set --admin-url or SLUICE_ADMIN_URL to the admin API's URL)`);
  }

  #unreachable(err: unknown, timeoutMs: number): CliError {
    const e = err as { name?: string; cause?: { code?: string; message?: string } };
    const why = e.name === 'TimeoutError'
      ? `no answer within ${timeoutMs / 1000} s`
      : e.cause?.code ?? e.cause?.message ?? (err instanceof Error ? err.message : String(err));
    // Something answered over TLS, but with a certificate this process does not trust (an
    // admin.tls pair is often self-signed): "is sluice serve running there?" would mislead.
    if (UNTRUSTED_CERTIFICATE.has(why)) {
      return new CliError('SLUICE_CLI_UNREACHABLE', `the admin API at ${this.shownUrl} presented a certificate this CLI does not trust (${why}): give it the certificate, or its CA's, with NODE_EXTRA_CA_CERTS=<PEM file>`);
    }
    if (why === 'ERR_SSL_WRONG_VERSION_NUMBER') {
      return new CliError('SLUICE_CLI_UNREACHABLE', `cannot reach the admin API at ${this.shownUrl}: ${why} (the port answers without TLS: use http://)`);
    }
    return new CliError('SLUICE_CLI_UNREACHABLE', `cannot reach the admin API at ${this.shownUrl}: ${why} (is \`sluice serve\` running there? set --admin-url or SLUICE_ADMIN_URL)`);
  }

  #refused(method: string, path: string, res: Response, body: unknown): CliError {
    const status = res.status;
    const code = errorCode(body);
    // The admin API's errors carry its error body; an HTML 404 or a proxy's 502 page does not.
    if (code === null || !code.startsWith('SLUICE_ERR_') || GATEWAY_PORT_CODES.has(code)) return this.#notAdminApi(method, path, res, body);
    const message = (body as { error: { message?: unknown } }).error.message;
    if (status === 401) {
      const hint = this.#token === null ? 'this gateway needs an admin token: set --token or SLUICE_ADMIN_TOKEN' : 'the admin token given (--token or SLUICE_ADMIN_TOKEN) is not the gateway\'s';
      return new AdminApiError(status, code, `admin API at ${this.shownUrl} refused the request: ${hint}`);
    }
    return new AdminApiError(status, code, `${method} ${path}: ${status} ${code}: ${typeof message === 'string' ? message : '(no message)'}`);
  }
}

/** Node's codes for a TLS peer whose certificate does not verify against the trusted CAs. */
const UNTRUSTED_CERTIFICATE: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A path segment from user input (a deployment id, a model, a key name), encoded. */
export const seg = (s: string): string => encodeURIComponent(s);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The `error.code` of an error body, or null. */
function errorCode(body: unknown): string | null {
  const code = isObject(body) && isObject(body['error']) ? body['error']['code'] : undefined;
  return typeof code === 'string' ? code : null;
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
