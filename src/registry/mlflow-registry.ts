// Read-only client for the MLflow Model Registry REST API (protocols.md A3). Control plane
// only: it runs when an admin deploys or lists models, never per request.

import { guarded, type CallBreaker } from '../dependencies/index.js';
import { RegistryError, type RegistryErrorCode } from './errors.js';
import type { ModelVersion, RegisteredModel, RegisteredModelAlias, RegistryTag } from './types.js';

export interface MlflowRegistryOptions {
  /** Tracking server base URL, e.g. `http://127.0.0.1:5000` (a path prefix is kept). */
  trackingUri: string;
  /** Sent as `Authorization: Bearer <token>` (MLFLOW_TRACKING_TOKEN). */
  token?: string;
  /** HTTP basic auth (MLFLOW_TRACKING_USERNAME / _PASSWORD). */
  username?: string;
  password?: string;
  /** Per HTTP request, body included. */
  timeoutMs?: number;
  /**
   * Every request goes through it (built with `registryUnavailable` as its failure test):
   * while it is open, calls fail at once with SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN.
   */
  breaker?: CallBreaker;
}

const API_PREFIX = '/api/2.0/mlflow';
// The server rejects more than 1000 on registered-models/search (protocols.md A3.2).
const MODELS_PAGE_SIZE = 1000;
// The server accepts up to 200000 here, but its default when omitted is not documented:
// always send one. 1000 keeps each answer small; pagination does the rest.
const VERSIONS_PAGE_SIZE = 1000;
// A server that keeps handing out tokens would otherwise loop forever.
const MAX_PAGES = 10_000;

export class MlflowRegistry {
  readonly #base: string;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #timeoutMs: number;
  readonly #breaker: CallBreaker | undefined;

  constructor(options: MlflowRegistryOptions) {
    let url: URL;
    try {
      url = new URL(options.trackingUri);
    } catch {
      throw new TypeError(`registry trackingUri is not a URL: ${JSON.stringify(options.trackingUri)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`registry trackingUri must be http(s), got ${url.protocol} (${options.trackingUri})`);
    }
    if (url.search || url.hash) {
      throw new TypeError(`registry trackingUri must not have a query or fragment: ${options.trackingUri}`);
    }
    // fetch() refuses URLs with embedded credentials, so `http://user:pass@host` becomes basic
    // auth, unless credentials are given, which win as MLflow's variables win over the URL's.
    let username = options.username;
    let password = options.password;
    if ((url.username || url.password) && options.token === undefined && username === undefined) {
      username = decodeURIComponent(url.username);
      password = decodeURIComponent(url.password);
    }
    url.username = '';
    url.password = '';
    if (options.token !== undefined && username !== undefined) {
      throw new TypeError('registry: give either token or username/password, not both');
    }
    if ((username === undefined) !== (password === undefined)) {
      throw new TypeError('registry: username and password go together');
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new TypeError(`registry timeoutMs must be a positive number, got ${timeoutMs}`);
    }

    this.#base = url.href.replace(/\/+$/, '') + API_PREFIX;
    this.#timeoutMs = timeoutMs;
    this.#breaker = options.breaker;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (username !== undefined && password !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
    }
    this.#headers = Object.freeze(headers);
  }

  /** Every registered model, following pagination to the end. */
  async listModels(): Promise<RegisteredModel[]> {
    const out: RegisteredModel[] = [];
    await this.#paginate('/registered-models/search', { max_results: String(MODELS_PAGE_SIZE) }, (body) => {
      const list = body.registered_models;
      if (list === undefined) return;
      if (!Array.isArray(list)) throw shapeError('registered_models is not an array');
      for (const item of list) out.push(parseRegisteredModel(item));
    });
    return out;
  }

  /** Every version of one registered model, in ascending version order; [] if the model is unknown. */
  async listVersions(name: string): Promise<ModelVersion[]> {
    const filter = nameFilter(name);
    const params: Record<string, string> = { max_results: String(VERSIONS_PAGE_SIZE) };
    if (filter !== null) params.filter = filter;
    const out: ModelVersion[] = [];
    await this.#paginate('/model-versions/search', params, (body) => {
      const list = body.model_versions;
      if (list === undefined) return;
      if (!Array.isArray(list)) throw shapeError('model_versions is not an array');
      for (const item of list) {
        const mv = parseModelVersion(item);
        // Without a filter (name holds both quote kinds) the server returned every model's versions.
        if (mv.name === name) out.push(mv);
      }
    });
    if (out.length === 0) return out;
    // MLflow's search leaves every version's aliases out (3.17: model-versions/get and the
    // registered model carry them): they come from the registered model.
    let aliases: RegisteredModelAlias[];
    try {
      aliases = parseRegisteredModel((await this.#get('/registered-models/get', { name })).registered_model).aliases;
    } catch (err) {
      // Deleted since the search: as unknown as it would be now.
      if (err instanceof RegistryError && err.code === 'SLUICE_ERR_REGISTRY_NOT_FOUND') return [];
      throw err;
    }
    for (const v of out) v.aliases = aliases.filter((a) => a.version === v.version).map((a) => a.alias);
    return out.sort(compareVersions);
  }

  /** One version, or null when the registry has no such model or version. */
  getVersion(name: string, version: string): Promise<ModelVersion | null> {
    // MLflow versions are integers; it answers 400 "must be an integer" for "latest", "8b" and
    // the like, which cannot name an existing version either.
    return this.#modelVersion('/model-versions/get', { name, version }, !/^\d+$/.test(version));
  }

  /**
   * The version an alias names (`champion`; `latest`, MLflow's reserved one, is the highest
   * version), or null when the model or the alias is unknown.
   */
  getVersionByAlias(name: string, alias: string): Promise<ModelVersion | null> {
    // An unknown alias of a known model: MLflow says INVALID_PARAMETER_VALUE ("Registered model alias x not found").
    return this.#modelVersion('/registered-models/alias', { name, alias }, true);
  }

  /** The `model_version` an endpoint answers; null for an unknown model, and for INVALID_PARAMETER_VALUE when `invalidIsNone`. */
  async #modelVersion(path: string, params: Record<string, string>, invalidIsNone: boolean): Promise<ModelVersion | null> {
    let body: Record<string, unknown>;
    try {
      body = await this.#get(path, params);
    } catch (err) {
      if (err instanceof RegistryError) {
        if (err.code === 'SLUICE_ERR_REGISTRY_NOT_FOUND') return null;
        if (invalidIsNone && err.mlflowErrorCode === 'INVALID_PARAMETER_VALUE') return null;
      }
      throw err;
    }
    if (body.model_version === undefined) throw shapeError('model_version missing');
    return parseModelVersion(body.model_version);
  }

  async #paginate(
    path: string,
    params: Record<string, string>,
    onPage: (body: Record<string, unknown>) => void,
  ): Promise<void> {
    const seen = new Set<string>();
    let token: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const body = await this.#get(path, token === undefined ? params : { ...params, page_token: token });
      onPage(body);
      const next = body.next_page_token;
      if (next === undefined || next === '') return;
      if (typeof next !== 'string') throw shapeError('next_page_token is not a string');
      if (seen.has(next)) throw shapeError(`next_page_token repeats (${next})`);
      seen.add(next);
      token = next;
    }
    throw shapeError(`more than ${MAX_PAGES} pages from ${path}`);
  }

  #get(path: string, params: Record<string, string>): Promise<Record<string, unknown>> {
    return this.#breaker === undefined ? this.#fetch(path, params) : guarded(this.#breaker, () => this.#fetch(path, params));
  }

  async #fetch(path: string, params: Record<string, string>): Promise<Record<string, unknown>> {
    const qs = new URLSearchParams(params).toString();
    const url = `${this.#base}${path}${qs ? `?${qs}` : ''}`;
    const shown = `${this.#base}${path}`;
    let res: Response;
    let text: string;
    try {
      // One signal covers connect, headers and body: a registry that stalls mid-body is as
      // unavailable as one that never answers.
      const signal = AbortSignal.timeout(this.#timeoutMs);
      res = await fetch(url, { method: 'GET', headers: this.#headers, signal, redirect: 'follow' });
      text = await res.text();
    } catch (err) {
      throw new RegistryError('SLUICE_ERR_REGISTRY_UNAVAILABLE', `model registry at ${shown} unreachable: ${describeFetchError(err, this.#timeoutMs)}`, {
        url: shown,
        cause: err,
      });
    }

    if (res.ok) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        throw new RegistryError('SLUICE_ERR_REGISTRY_BAD_RESPONSE', `model registry at ${shown} answered ${res.status} with non-JSON (${snippet(text)})`, {
          httpStatus: res.status,
          url: shown,
          cause: err,
        });
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new RegistryError('SLUICE_ERR_REGISTRY_BAD_RESPONSE', `model registry at ${shown} answered with a JSON ${Array.isArray(body) ? 'array' : typeof body}, not an object`, {
          httpStatus: res.status,
          url: shown,
        });
      }
      return body as Record<string, unknown>;
    }

    const mlflowError = parseMlflowError(text);
    const detail = mlflowError ? `${mlflowError.code}: ${mlflowError.message}` : snippet(text);
    const code = classifyStatus(res.status, mlflowError?.code);
    throw new RegistryError(code, `model registry at ${shown} answered ${res.status} (${detail})`, {
      httpStatus: res.status,
      url: shown,
      ...(mlflowError ? { mlflowErrorCode: mlflowError.code } : {}),
    });
  }
}

/**
 * The credentials MLflow's own clients send, from the same variables (`mlflow models serve`
 * inherits them): basic auth when MLFLOW_TRACKING_USERNAME and _PASSWORD are both set, else
 * MLFLOW_TRACKING_TOKEN as a bearer token (MLflow's `rest_utils.http_request` in that order).
 */
export function credentialsFromEnv(env: NodeJS.ProcessEnv): Pick<MlflowRegistryOptions, 'token' | 'username' | 'password'> {
  const username = env.MLFLOW_TRACKING_USERNAME;
  const password = env.MLFLOW_TRACKING_PASSWORD;
  if (username && password) return { username, password };
  const token = env.MLFLOW_TRACKING_TOKEN;
  return token ? { token } : {};
}

/**
 * Whether a failed call says the registry is down (what its breaker counts): unreachable,
 * timed out, 5xx or 429. An answer that is an error (404, 401, a bad shape) is the
 * registry working.
 */
export function registryUnavailable(err: unknown): boolean {
  return !(err instanceof RegistryError) || err.code === 'SLUICE_ERR_REGISTRY_UNAVAILABLE';
}

function classifyStatus(status: number, mlflowCode: string | undefined): RegistryErrorCode {
  if (status >= 500 || status === 429 || status === 408) return 'SLUICE_ERR_REGISTRY_UNAVAILABLE';
  if (status === 401 || status === 403) return 'SLUICE_ERR_REGISTRY_UNAUTHORIZED';
  // A bare 404 without MLflow's error body means the URL is not an MLflow API at all
  // (wrong trackingUri, or a proxy's page): a configuration problem, not "no such model".
  if (status === 404) return mlflowCode === undefined ? 'SLUICE_ERR_REGISTRY_BAD_RESPONSE' : 'SLUICE_ERR_REGISTRY_NOT_FOUND';
  if (mlflowCode === 'RESOURCE_DOES_NOT_EXIST') return 'SLUICE_ERR_REGISTRY_NOT_FOUND';
  if (status >= 400 && mlflowCode !== undefined) return 'SLUICE_ERR_REGISTRY_REJECTED';
  return 'SLUICE_ERR_REGISTRY_BAD_RESPONSE';
}

function parseMlflowError(text: string): { code: string; message: string } | null {
  try {
    const body = JSON.parse(text) as unknown;
    if (body && typeof body === 'object' && typeof (body as { error_code?: unknown }).error_code === 'string') {
      const { error_code, message } = body as { error_code: string; message?: unknown };
      return { code: error_code, message: typeof message === 'string' ? message : '' };
    }
  } catch {
    // not JSON: the caller shows a snippet instead
  }
  return null;
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  // undici wraps the socket error: "fetch failed" with cause ECONNREFUSED and the like.
  if (e?.cause?.code) return `${e.cause.code}${e.cause.message ? ` (${e.cause.message})` : ''}`;
  return e?.message ?? String(err);
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat || 'empty body';
}

function shapeError(what: string): RegistryError {
  return new RegistryError('SLUICE_ERR_REGISTRY_BAD_RESPONSE', `model registry response has an unexpected shape: ${what}`);
}

/**
 * `name = '<name>'` for MLflow's search filter. Its parser strips the outer quotes and
 * has no escape sequence (neither '' nor \' work, checked on MLflow 3.17), so a name with
 * a single quote goes in double quotes; a name with both kinds cannot be expressed and
 * the caller filters client-side (null).
 */
export function nameFilter(name: string): string | null {
  if (!name.includes("'")) return `name = '${name}'`;
  if (!name.includes('"')) return `name = "${name}"`;
  return null;
}

function compareVersions(a: ModelVersion, b: ModelVersion): number {
  const na = Number(a.version);
  const nb = Number(b.version);
  if (Number.isInteger(na) && Number.isInteger(nb)) return na - nb;
  return a.version < b.version ? -1 : a.version > b.version ? 1 : 0;
}

type Obj = Record<string, unknown>;

function asObject(v: unknown, what: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw shapeError(`${what} is not an object`);
  return v as Obj;
}

function optString(o: Obj, key: string): string | undefined {
  const v = o[key];
  return typeof v === 'string' ? v : undefined;
}

function optNumber(o: Obj, key: string): number | undefined {
  const v = o[key];
  if (typeof v === 'number') return v;
  // int64 fields may arrive as strings from proxies that follow proto3 JSON strictly.
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return undefined;
}

function assign<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

function parseTags(v: unknown, what: string): RegistryTag[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw shapeError(`${what}.tags is not an array`);
  return v.map((t) => {
    const o = asObject(t, `${what}.tags[]`);
    return { key: String(o.key ?? ''), value: String(o.value ?? '') };
  });
}

export function parseModelVersion(v: unknown): ModelVersion {
  const o = asObject(v, 'model_version');
  const name = o.name;
  const version = o.version;
  if (typeof name !== 'string') throw shapeError('model_version.name is not a string');
  if (typeof version !== 'string' && typeof version !== 'number') {
    throw shapeError(`model_version.version of ${name} is missing`);
  }
  const aliases = o.aliases;
  if (aliases !== undefined && !Array.isArray(aliases)) throw shapeError('model_version.aliases is not an array');
  const mv: ModelVersion = {
    name,
    version: String(version),
    tags: parseTags(o.tags, 'model_version'),
    aliases: (aliases ?? []).map(String),
  };
  assign(mv, 'creation_timestamp', optNumber(o, 'creation_timestamp'));
  assign(mv, 'last_updated_timestamp', optNumber(o, 'last_updated_timestamp'));
  assign(mv, 'current_stage', optString(o, 'current_stage'));
  assign(mv, 'description', optString(o, 'description'));
  assign(mv, 'source', optString(o, 'source'));
  assign(mv, 'run_id', optString(o, 'run_id'));
  assign(mv, 'run_link', optString(o, 'run_link'));
  assign(mv, 'status', optString(o, 'status'));
  assign(mv, 'status_message', optString(o, 'status_message'));
  assign(mv, 'user_id', optString(o, 'user_id'));
  assign(mv, 'model_id', optString(o, 'model_id'));
  return mv;
}

export function parseRegisteredModel(v: unknown): RegisteredModel {
  const o = asObject(v, 'registered_model');
  const name = o.name;
  if (typeof name !== 'string') throw shapeError('registered_model.name is not a string');
  const latest = o.latest_versions;
  if (latest !== undefined && !Array.isArray(latest)) throw shapeError(`${name}.latest_versions is not an array`);
  const aliases = o.aliases;
  if (aliases !== undefined && !Array.isArray(aliases)) throw shapeError(`${name}.aliases is not an array`);
  const rm: RegisteredModel = {
    name,
    latest_versions: (latest ?? []).map(parseModelVersion),
    tags: parseTags(o.tags, name),
    aliases: (aliases ?? []).map((a): RegisteredModelAlias => {
      const ao = asObject(a, `${name}.aliases[]`);
      return { alias: String(ao.alias ?? ''), version: String(ao.version ?? '') };
    }),
  };
  assign(rm, 'creation_timestamp', optNumber(o, 'creation_timestamp'));
  assign(rm, 'last_updated_timestamp', optNumber(o, 'last_updated_timestamp'));
  assign(rm, 'description', optString(o, 'description'));
  assign(rm, 'user_id', optString(o, 'user_id'));
  return rm;
}
