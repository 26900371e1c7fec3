// Per-request state and the small set of response writers every protocol module shares,
// including the three error shapes (Ollama, OpenAI compat, MLflow) from protocols.md.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

/** Work that must stop when the client goes away (a generation, a timer, a download). */
export interface Job {
  abort(): void;
  readonly tokensSent: number;
}

export type ErrorStyle = 'ollama' | 'openai' | 'mlflow';

export const JSON_UTF8 = 'application/json; charset=utf-8';
export const JSON_PLAIN = 'application/json';
export const TEXT_PLAIN = 'text/plain';
export const TEXT_UTF8 = 'text/plain; charset=utf-8';
export const NDJSON = 'application/x-ndjson';
export const SSE = 'text/event-stream';

export class Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** URL path without the query string. */
  readonly path: string;
  /** Query string without the '?', or ''. */
  readonly query: string;
  /** performance.now() when the request arrived. */
  readonly startedAt: number;
  /** Error shape for failures this exchange reports (body too large, injected errors). */
  style: ErrorStyle = 'ollama';
  job: Job | null = null;
  /** False for the /_sim control routes, which stats do not count. */
  counted = true;

  constructor(req: IncomingMessage, res: ServerResponse, path: string, query: string) {
    this.req = req;
    this.res = res;
    this.path = path;
    this.query = query;
    this.startedAt = performance.now();
  }

  get requestId(): string | null {
    const id = this.req.headers['x-request-id'];
    return typeof id === 'string' ? id : null;
  }

  /** True once the client went away or the response was ended: nothing may be written. */
  get gone(): boolean {
    return this.res.writableEnded || this.res.destroyed;
  }
}

export function send(res: ServerResponse, status: number, contentType: string | null, body: string | Buffer): void {
  if (res.writableEnded || res.destroyed) return;
  if (contentType === null) res.writeHead(status, { 'content-length': Buffer.byteLength(body) });
  else res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, contentType = JSON_UTF8): void {
  send(res, status, contentType, JSON.stringify(value));
}

/** `{"error": "..."}` as gin's c.JSON writes it. */
export function sendOllamaError(res: ServerResponse, status: number, message: string): void {
  send(res, status, JSON_UTF8, JSON.stringify({ error: message }));
}

function openaiType(status: number): string {
  if (status === 400) return 'invalid_request_error';
  if (status === 404) return 'not_found_error';
  return 'api_error';
}

/**
 * Ollama's OpenAI-compat error. `fromHandler` mirrors which Ollama layer produced it: the
 * middleware uses gin's c.JSON (charset, no newline); errors relayed from the native handler
 * go through json.Encoder (plain `application/json`, trailing newline).
 */
export function sendOpenAIError(res: ServerResponse, status: number, message: string, fromHandler = false): void {
  const body = JSON.stringify({ error: { message, type: openaiType(status), param: null, code: null } });
  if (fromHandler) send(res, status, JSON_PLAIN, body + '\n');
  else send(res, status, JSON_UTF8, body);
}

/** MLflow's ErrorCode name for a status (inverse of ERROR_CODE_TO_HTTP_STATUS). */
export function mlflowErrorCode(status: number): string {
  switch (status) {
    case 400: return 'BAD_REQUEST';
    case 401: return 'UNAUTHENTICATED';
    case 403: return 'PERMISSION_DENIED';
    case 404: return 'RESOURCE_DOES_NOT_EXIST';
    case 409: return 'RESOURCE_CONFLICT';
    case 429: return 'REQUEST_LIMIT_EXCEEDED';
    case 499: return 'CANCELLED';
    case 501: return 'NOT_IMPLEMENTED';
    case 503: return 'TEMPORARILY_UNAVAILABLE';
    case 504: return 'DEADLINE_EXCEEDED';
    default: return 'INTERNAL_ERROR';
  }
}

const NON_ASCII = /[\u0080-\uffff]/g;

function escapeNonAscii(c: string): string {
  return '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
}

/**
 * Python's json.dumps with its defaults (`", "` and `": "` separators, ASCII-only output),
 * which is how MLflow writes its bodies.
 */
export function pythonJson(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v).replace(NON_ASCII, escapeNonAscii);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return '[' + v.map(pythonJson).join(', ') + ']';
  if (typeof v === 'object' && v !== null) {
    const parts: string[] = [];
    for (const [k, x] of Object.entries(v)) if (x !== undefined) parts.push(pythonJson(k) + ': ' + pythonJson(x));
    return '{' + parts.join(', ') + '}';
  }
  return 'null';
}

export function sendMlflowError(res: ServerResponse, status: number, message: string, code = mlflowErrorCode(status)): void {
  send(res, status, JSON_PLAIN, pythonJson({ error_code: code, message }));
}

export function sendStyledError(ex: Exchange, status: number, message: string): void {
  switch (ex.style) {
    case 'ollama': return sendOllamaError(ex.res, status, message);
    case 'openai': return sendOpenAIError(ex.res, status, message, true);
    case 'mlflow': return sendMlflowError(ex.res, status, message);
  }
}

const OLLAMA_BUSY = 'server busy, please try again.  maximum pending requests exceeded';

/** The body a real server of this style would send with a forced status (`status` tunable). */
export function sendForcedStatus(ex: Exchange, status: number): void {
  if (ex.style === 'mlflow' && status === 504) {
    // FastAPI-era MLflow's timeout middleware answers with this literal, not JSON.
    send(ex.res, 504, JSON_PLAIN, 'Request processing time exceeded limit');
    return;
  }
  const message = status === 503 ? OLLAMA_BUSY : status === 499 ? 'request canceled' : `simulated status ${status}`;
  sendStyledError(ex, status, message);
}

/** Parses `a=1&b=2` for the few routes that take parameters. */
export function queryParam(query: string, name: string): string | null {
  if (query === '') return null;
  return new URLSearchParams(query).get(name);
}
