// The OpenAI- and Ollama-compatible endpoints at the root of the data plane
// (`POST /v1/chat/completions`, `POST /api/chat`, ...), routed by the body's `model` with
// the rules of paths, and the model lists (`GET /v1/models`, `/api/tags`, `/api/ps`) built
// from the route table. The same body reading serves path routes whose deployment has a
// served_model: the body's `model` is rewritten to it on the way up.
//
// Only these requests read a body before they are routed, and only its top level: a byte
// scan (json-scan.ts) finds `model` and, when it changes, its value is spliced, never the
// body re-serialised.

import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { bytesOf, type ClientListener, type ClientResponse } from './front-end/client.js';
import type { DeploymentCounters } from '../balancer/index.js';
import { errorBody, malformedRequestCode, ollamaErrorBody, type ErrorCode } from '../errors/index.js';
import { MODEL_ENDPOINTS, Protocol } from '../genai-endpoints.js';
import { FieldScan, fieldSpan, JsonKey, replaceSpan, scanTopLevelString, spanString } from '../json-scan.js';
import { holdClock, monoNow, releaseClock } from './clock.js';
import type { Exchange } from './exchange.js';
import { forwardedHeader, type ClientHead } from './headers.js';
import { AliasRoute, type DeploymentRoute, type KeyRoute, type RouteTable } from './route-table.js';

/** The protocol of a path whose body names the model (at the root, or after a route's segment); undefined for any other. */
export function modelEndpoint(path: string): Protocol | undefined {
  return MODEL_ENDPOINTS.get(path)?.protocol;
}

const enum Listing {
  OpenAiModels = 0,
  OllamaTags = 1,
  OllamaPs = 2,
  OllamaVersion = 3,
}

const LISTINGS: ReadonlyMap<string, Listing> = new Map([
  ['/v1/models', Listing.OpenAiModels], ['/api/tags', Listing.OllamaTags], ['/api/ps', Listing.OllamaPs], ['/api/version', Listing.OllamaVersion],
]);
const MODELS_PREFIX = '/v1/models/';

/** A GET the gateway answers itself: a model list (or `/v1/models/<id>`); false for any other path. */
export function isListing(path: string): boolean {
  return LISTINGS.has(path) || (path.startsWith(MODELS_PREFIX) && path.length > MODELS_PREFIX.length);
}

/** What `/api/version` reports: the Ollama API version whose shapes sluice follows (protocols.md). */
const OLLAMA_API_VERSION = '0.32.15';
/** Ollama's `expires_at` for a model kept loaded (keep_alive -1): replicas stay until stopped. */
const KEPT_LOADED = '2318-01-01T00:00:00Z';

/**
 * The body of a model list, or of one OpenAI model object; null when `/v1/models/<id>`
 * names no model the caller may see. Deployments that need an API key are listed only
 * for a key whose scope allows them.
 */
export function listingBody(path: string, table: RouteTable, key: KeyRoute | undefined, counters: DeploymentCounters): string | null {
  const listing = LISTINGS.get(path);
  if (listing === Listing.OllamaVersion) return JSON.stringify({ version: OLLAMA_API_VERSION });
  const entries = visibleModels(table, key);
  switch (listing) {
    case Listing.OpenAiModels:
      return JSON.stringify({ object: 'list', data: entries.map(openAiModel) });
    case Listing.OllamaTags:
      return JSON.stringify({ models: entries.map(ollamaModel) });
    case Listing.OllamaPs:
      return JSON.stringify({ models: entries.filter((e) => e.loaded).map((e) => ({ ...ollamaModel(e), expires_at: expiresAt(e, counters), size_vram: 0 })) });
    default: {
      const id = safeDecode(path.slice(MODELS_PREFIX.length));
      const byId = entries.find((e) => e.id === id);
      if (byId !== undefined) return JSON.stringify(openAiModel(byId));
      // Ollama's spelling (`<model>:<version>`, `<model>:latest`), which the root routes too:
      // Ollama's own /v1/models/<id> answers with the id as it was asked for.
      const byTag = entries.find((e) => e.tag === id);
      return byTag === undefined ? null : JSON.stringify(openAiModel({ ...byTag, id }));
    }
  }
}

/** The model named by `/v1/models/<id>`, as the client wrote it. */
export function listedModelName(path: string): string {
  return safeDecode(path.slice(MODELS_PREFIX.length));
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

interface ModelEntry {
  /** The OpenAI name: `<model>-<version>` or the alias `<model>`. */
  readonly id: string;
  /** The Ollama name: `<model>:<version>` or `<model>:latest`. */
  readonly tag: string;
  readonly created: number;
  /** Some replica is ready (Ollama's `ps`: loaded). */
  readonly loaded: boolean;
  /** The deployments behind it that have replicas: when all of them may hibernate, the last to do so is when it unloads. */
  readonly running: readonly DeploymentRoute[];
}

/**
 * Ollama's `expires_at`: when the model unloads if no request comes. Kept loaded (far in
 * the future) unless every deployment behind it hibernates when idle; then the latest of
 * their forecasts (the autoscaler's, in the shared counters).
 */
function expiresAt(e: ModelEntry, counters: DeploymentCounters): string {
  let latest = 0;
  for (const d of e.running) {
    const at = d.countsArrivals ? counters.sleepsAt(d.slot) : 0;
    if (at === 0) return KEPT_LOADED;
    latest = Math.max(latest, at);
  }
  return latest === 0 ? KEPT_LOADED : new Date(latest * 1000).toISOString();
}

function visibleModels(table: RouteTable, key: KeyRoute | undefined): ModelEntry[] {
  const visible = (d: DeploymentRoute): boolean => !d.policies.auth.required || (key !== undefined && key.scope.allows(d.id, d.model));
  const out: ModelEntry[] = [];
  for (const alias of table.aliases()) {
    const targets = alias.targets.filter(visible);
    // An alias is listed only to a key that may call every version behind it: through it, one
    // that may call some would be refused on the others (403), at random.
    if (targets.length === 0 || targets.length < alias.targets.length) continue;
    const running = targets.filter((d) => d.replicas.length > 0);
    out.push({ id: alias.model, tag: `${alias.model}:latest`, created: Math.max(...targets.map((d) => d.created)), loaded: running.length > 0, running });
  }
  for (const d of table.deployments) {
    if (visible(d)) out.push({ id: d.id, tag: `${d.model}:${d.version}`, created: d.created, loaded: d.replicas.length > 0, running: d.replicas.length > 0 ? [d] : [] });
  }
  return out;
}

function openAiModel(e: ModelEntry): object {
  return { id: e.id, object: 'model', created: e.created, owned_by: 'sluice' };
}

function ollamaModel(e: ModelEntry): object {
  return {
    name: e.tag, model: e.tag, modified_at: new Date(e.created * 1000).toISOString(), size: 0,
    digest: createHash('sha256').update(e.tag).digest('hex'),
    details: { parent_model: '', format: '', family: '', families: null, parameter_size: '', quantization_level: '' },
  };
}

/**
 * A gateway error in the protocol's own shape, so that SDKs show their usual message:
 * OpenAI's `{"error":{"message","type","param","code"}}` (code `model_not_found` for an
 * unknown model), Ollama's `{"error":"..."}`. Both carry the request id.
 */
export function protocolErrorBody(protocol: Protocol, code: ErrorCode, message: string, requestId: string): string {
  if (protocol === Protocol.Ollama) return ollamaErrorBody(message, requestId);
  const modelError = code === 'SLUICE_ERR_MODEL_NOT_FOUND' || code === 'SLUICE_ERR_MODEL_REQUIRED';
  return errorBody(code === 'SLUICE_ERR_MODEL_NOT_FOUND' ? 'model_not_found' : code, message, requestId, { type: 'invalid_request_error', param: modelError ? 'model' : null });
}

/**
 * `body` with its top-level model replaced by `served` (JSON, quotes included); null when
 * it names none (or names it twice), or already names that one.
 */
export function withModel(body: Buffer, served: Buffer): Buffer | null {
  if (scanTopLevelString(body, MODEL_KEY) !== FieldScan.Found) return null;
  const renamed = withServed(body, served);
  return renamed === body ? null : renamed;
}

/** `body` with the model value the last scan found replaced by `served` (JSON), unless it is that already or there is none. */
function withServed(body: Buffer, served: Buffer | null): Buffer {
  return served === null || body.compare(served, 0, served.length, fieldSpan.start, fieldSpan.end) === 0 ? body : replaceSpan(body, served);
}

/** What the gateway does with a request once its whole body has been read. */
export interface ModelRequestOwner {
  /** Goes on as a request for `route`, its body read (and its `model` rewritten); sets req.exchange. */
  admitRead(req: ModelRequest, route: DeploymentRoute, alias: boolean, body: Buffer): void;
  /** Answers without an upstream; `body`: the protocol-shaped error body, when it has one. */
  refuseRead(req: ModelRequest, code: ErrorCode, message: string, close: boolean, body?: string): void;
  /** A body being read counts as work in progress (a drain waits for it): `delta` +1 when it starts, -1 when it ends. */
  reading(delta: 1 | -1): void;
  /** The client left before its body was whole: no exchange will answer or record it. */
  leftWhileRead(req: ModelRequest): void;
  /** Takes `bytes` more of the worker's budget for bodies being read (limits.max_buffered_bytes); false when they would pass it. Negative: gives them back. */
  buffer(bytes: number): boolean;
}

const MODEL_KEY = new JsonKey('model');
const NAME_KEY = new JsonKey('name');
const MIN_BUFFER = 4096;
const EMPTY = Buffer.alloc(0);
// At most this much is reserved for an announced body before its bytes come: a head that
// announces 16 MiB and sends nothing must not make the gateway allocate 16 MiB (200 such
// heads reserved 3.2 GB). A larger body grows to its announced length as it arrives.
const MAX_RESERVED = 1024 * 1024;

/**
 * A request whose body is read whole before it goes on: at the root, where the body's
 * `model` picks the route, and on a path route whose model name is rewritten. The
 * client's head is kept as a copy (the handler's is scratch).
 */
export class ModelRequest implements ClientListener {
  readonly #owner: ModelRequestOwner;
  readonly res: ClientResponse;
  readonly head: ClientHead;
  readonly requestId: string;
  readonly method: string;
  /** The client's path, and the part of it the upstream is asked for. */
  readonly url: string;
  readonly rest: string;
  readonly query: string;
  readonly client: string;
  readonly key: KeyRoute | undefined;
  /** When its head arrived (monoNow): the times of the exchange it becomes count from then, its body's upload included. */
  readonly startedAt = monoNow();
  readonly #table: RouteTable;
  readonly #protocol: Protocol;
  /** The route a path request named; null at the root, where the body's model picks it. */
  readonly #route: DeploymentRoute | null;
  readonly #alias: boolean;
  readonly #limit: number;
  /** The setting #limit comes from, for the 413's message. */
  readonly #limitName: string;
  #body: Buffer = EMPTY;
  /** What #body takes of the owner's budget (its length while the body is being read). */
  #buffered = 0;
  #length = 0;
  #done = false;
  /** Counted by the owner as being read. */
  #reading = false;
  /** The exchange it became once admitted: a client that leaves later is its business. */
  exchange: Exchange | null = null;
  /** The body's model as the client spelt it, once read at the root (spans name it); null on a path route. */
  requestedModel: string | null = null;

  constructor(
    owner: ModelRequestOwner, res: ClientResponse, head: ClientHead, requestId: string, method: string, url: string, rest: string, query: string, client: string,
    key: KeyRoute | undefined, table: RouteTable, protocol: Protocol, route: DeploymentRoute | null, alias: boolean,
  ) {
    this.#owner = owner;
    this.res = res;
    this.head = { ...head };
    this.requestId = requestId;
    this.method = method;
    this.url = url;
    this.rest = rest;
    this.query = query;
    this.client = client;
    this.key = key;
    this.#table = table;
    this.#protocol = protocol;
    this.#route = route;
    this.#alias = alias;
    this.#limit = route === null ? table.maxBufferedBodyBytes : Math.min(route.maxBodyBytes, table.maxBufferedBodyBytes);
    this.#limitName = this.#limit === table.maxBufferedBodyBytes ? 'limits.max_buffered_body_bytes' : 'limits.max_body_bytes';
  }

  /** The Origin of a browser's request at the root that listen.cors_origins allows (proxy/cors.ts); null: none. */
  corsOrigin: string | null = null;

  /** Came through Ollama's API at the root: its errors take Ollama's shape. */
  get ollamaErrors(): boolean {
    return this.#protocol === Protocol.Ollama && this.#route === null;
  }

  /** Body bytes read so far. */
  get bytesRead(): number {
    return this.#length;
  }

  /** The body's model chose the route (the request came to the root), not the path. */
  get atRoot(): boolean {
    return this.#route === null;
  }

  /** The route its path named; null at the root, where its body's model is to pick one. */
  get route(): DeploymentRoute | null {
    return this.#route;
  }

  /** Reads the body (or goes on at once when there is none); one announced over the limit is refused unread. */
  read(): void {
    const announced = this.head.contentLength;
    if (announced > this.#limit) {
      this.#done = true;
      this.#owner.refuseRead(this, 'SLUICE_ERR_BODY_TOO_LARGE', `request body of ${announced} bytes exceeds ${this.#limit} (${this.#limitName})`, true);
      return;
    }
    const bodyless = !this.head.chunked && this.head.contentLength <= 0;
    if (!bodyless && !this.#grow(announced > 0 ? Math.min(announced, MAX_RESERVED) : MIN_BUFFER)) return;
    // One abort handler for the request's whole life (uWS keeps a handle per registration).
    const res = this.res;
    if (res.listen !== undefined) res.listen(this, !bodyless);
    else res.onAborted(() => this.onClientAborted());
    if (bodyless) {
      this.#finish();
      return;
    }
    this.#reading = true;
    this.#owner.reading(1);
    if (res.listen === undefined) res.onData((ab, isLast) => this.onClientData(ab, isLast));
  }

  onClientAborted(): void {
    const reading = !this.#done;
    this.#end();
    if (this.exchange !== null) this.exchange.onClientAborted();
    else if (reading) this.#owner.leftWhileRead(this);
  }

  onClientMalformed(status: number, message: string): void {
    if (this.exchange !== null) {
      this.exchange.onClientMalformed(status, message);
      return;
    }
    if (this.#done) return;
    this.#end();
    this.#owner.refuseRead(this, malformedRequestCode(status), message, true);
  }

  #end(): void {
    this.#done = true;
    // The body now is the exchange's (or nobody's): the budget is for bodies still arriving.
    if (this.#buffered > 0) {
      this.#owner.buffer(-this.#buffered);
      this.#buffered = 0;
    }
    if (!this.#reading) return;
    this.#reading = false;
    this.#owner.reading(-1);
  }

  onClientData(data: ArrayBuffer | Uint8Array, isLast: boolean): void {
    if (this.#done) return;
    const bytes = bytesOf(data);
    const length = this.#length + bytes.length;
    if (length > this.#limit) {
      this.#end();
      this.#owner.refuseRead(this, 'SLUICE_ERR_BODY_TOO_LARGE', `request body exceeds ${this.#limit} bytes (${this.#limitName})`, true);
      return;
    }
    // Up to the announced length (read() refused one over the limit), or the limit when chunked.
    if (length > this.#body.length && !this.#grow(Math.min(this.head.contentLength > 0 ? this.head.contentLength : this.#limit, Math.max(length, this.#body.length * 2)))) return;
    this.#body.set(bytes, this.#length);
    this.#length = length;
    if (isLast) this.#finish();
  }

  /** Makes the body's buffer `size` bytes, within the owner's budget; false (the request refused) when past it. */
  #grow(size: number): boolean {
    if (!this.#owner.buffer(size - this.#buffered)) {
      this.#end();
      this.#owner.refuseRead(this, 'SLUICE_ERR_BUFFERS_FULL', `the gateway holds ${this.#table.maxBufferedBytes} bytes of request bodies being read (limits.max_buffered_bytes): retry shortly`, true);
      return false;
    }
    this.#buffered = size;
    const grown = Buffer.allocUnsafe(size);
    if (this.#length > 0) this.#body.copy(grown, 0, 0, this.#length);
    this.#body = grown;
    return true;
  }

  #finish(): void {
    this.#end();
    const body = this.#length === this.#body.length ? this.#body : this.#body.subarray(0, this.#length);
    holdClock();
    try {
      const route = this.#route;
      // A path route here has a configured served_model (DeploymentRoute.rewritesPathModel).
      if (route === null) this.#routeByModel(body);
      else this.#admitServed(route, body);
    } finally {
      releaseClock();
    }
  }

  /**
   * A path route's body, its model renamed to the one its server knows. One the scan cannot
   * read, or with `model` twice, is refused as at the root: the server would read a model the
   * gateway did not rename (the last key, or after a BOM), under this route's scope and price.
   */
  #admitServed(route: DeploymentRoute, body: Buffer): void {
    const scan = scanTopLevelString(body, MODEL_KEY);
    if (scan === FieldScan.Invalid || scan === FieldScan.Duplicate) {
      this.#refuseScan(scan);
      return;
    }
    this.#owner.admitRead(this, route, this.#alias, scan === FieldScan.Found ? withServed(body, route.servedModelJson) : body);
  }

  #refuseScan(scan: FieldScan.Invalid | FieldScan.Duplicate): void {
    if (scan === FieldScan.Duplicate) {
      this.#refuse('SLUICE_ERR_BAD_REQUEST', `'model' is given more than once`);
      return;
    }
    // Read only now: a compressed body is never JSON, and a body that is pays nothing for it.
    const coding = forwardedHeader(this.head.headerLines, 'content-encoding');
    if (coding !== '' && coding.toLowerCase() !== 'identity') {
      this.#refuse('SLUICE_ERR_CONTENT_ENCODING', `the request body is sent with Content-Encoding: ${coding}, which the gateway does not decode to read its model: send it uncompressed`);
    } else this.#refuse('SLUICE_ERR_BAD_REQUEST', this.#protocol === Protocol.Ollama ? 'invalid JSON body' : 'We could not parse the JSON body of your request.');
  }

  #routeByModel(body: Buffer): void {
    let scan = scanTopLevelString(body, MODEL_KEY);
    const ollama = this.#protocol === Protocol.Ollama;
    // Ollama's /api/show still takes the deprecated `name` when `model` is not there.
    if (scan === FieldScan.Missing && ollama && this.url === '/api/show') scan = scanTopLevelString(body, NAME_KEY);
    const required = ollama ? 'model is required' : 'you must provide a model parameter';
    switch (scan) {
      case FieldScan.Invalid:
      case FieldScan.Duplicate:
        this.#refuseScan(scan);
        return;
      case FieldScan.NotString:
        this.#refuse('SLUICE_ERR_MODEL_REQUIRED', ollama ? 'model must be a string' : 'Invalid type for \'model\': expected a string.');
        return;
      case FieldScan.Missing:
        this.#refuse('SLUICE_ERR_MODEL_REQUIRED', required);
        return;
    }
    let name: string;
    try {
      name = spanString(body);
    } catch {
      this.#refuse('SLUICE_ERR_BAD_REQUEST', 'the model name is not a valid JSON string');
      return;
    }
    if (name === '') {
      this.#refuse('SLUICE_ERR_MODEL_REQUIRED', required);
      return;
    }
    const matched = this.#table.forModel(name);
    if (matched === undefined) {
      this.#refuse('SLUICE_ERR_MODEL_NOT_FOUND', ollama ? `model '${name}' not found` : `The model '${name}' does not exist`);
      return;
    }
    let route: DeploymentRoute | undefined;
    const alias = matched instanceof AliasRoute;
    if (alias) {
      const sticky = matched.stickyHeader;
      route = sticky === null ? matched.pick() : matched.pickFor(sticky !== '' ? forwardedHeader(this.head.headerLines, sticky) : this.key?.name ?? '');
      if (route === undefined) {
        this.#owner.refuseRead(this, 'SLUICE_ERR_NO_READY_REPLICA', `no version of ${name} has traffic weight`, false);
        return;
      }
    } else route = matched;
    if (body.length > route.maxBodyBytes) {
      this.#owner.refuseRead(this, 'SLUICE_ERR_BODY_TOO_LARGE', `request body of ${body.length} bytes exceeds ${route.maxBodyBytes} (limits.max_body_bytes)`, false);
      return;
    }
    this.requestedModel = name;
    // The scan's span is still the model's (spanString reads, it does not scan).
    this.#owner.admitRead(this, route, alias, withServed(body, route.servedModelJson));
  }

  #refuse(code: ErrorCode, message: string): void {
    this.#owner.refuseRead(this, code, message, false, protocolErrorBody(this.#protocol, code, message, this.requestId));
  }
}
