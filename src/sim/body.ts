// Request bodies for the JSON endpoints, and the decoder error texts of the servers being
// imitated (Go's encoding/json for Ollama, Python's json for MLflow).

import type { IncomingMessage } from 'node:http';
import type { SimContext } from './context.js';
import { type Exchange, sendStyledError } from './http.js';

/** Bodies are parsed as a whole; beyond this the simulator answers 413 instead of buffering. */
export const MAX_JSON_BODY = 64 * 1024 * 1024;

export type BodyHandler = (sim: SimContext, ex: Exchange, body: Buffer) => void;

const kReader = Symbol('sim.bodyReader');
type ReqWithReader = IncomingMessage & { [kReader]?: BodyReader };

const EMPTY = Buffer.alloc(0);

class BodyReader {
  readonly sim: SimContext;
  readonly ex: Exchange;
  readonly done: BodyHandler;
  first: Buffer | null = null;
  more: Buffer[] | null = null;
  size = 0;

  constructor(sim: SimContext, ex: Exchange, done: BodyHandler) {
    this.sim = sim;
    this.ex = ex;
    this.done = done;
  }
}

// Module-level listeners (`this` is the request) so reading a body allocates no closures.
function onData(this: ReqWithReader, chunk: Buffer): void {
  const r = this[kReader]!;
  r.size += chunk.length;
  if (r.size > MAX_JSON_BODY) {
    this.off('data', onData);
    this.off('end', onEnd);
    this.resume();
    sendStyledError(r.ex, 413, `request body larger than ${MAX_JSON_BODY} bytes`);
    return;
  }
  if (r.first === null) r.first = chunk;
  else (r.more ??= [r.first]).push(chunk);
}

function onEnd(this: ReqWithReader): void {
  const r = this[kReader]!;
  this[kReader] = undefined;
  if (r.ex.gone) return;
  const body = r.more !== null ? Buffer.concat(r.more, r.size) : (r.first ?? EMPTY);
  r.done(r.sim, r.ex, body);
}

export function readBody(sim: SimContext, ex: Exchange, done: BodyHandler): void {
  const req = ex.req as ReqWithReader;
  req[kReader] = new BodyReader(sim, ex, done);
  req.on('data', onData);
  req.on('end', onEnd);
}

/** True when a body holds only whitespace (Go's decoder then reports io.EOF). */
export function isBlank(body: Buffer): boolean {
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return true;
}

const POSITION = /position (\d+)/;
const TRUNCATED = /end of JSON input|Unterminated string/;

function errorPosition(text: string, err: unknown): number {
  const m = POSITION.exec(err instanceof Error ? err.message : '');
  if (m !== null) return Number(m[1]);
  let i = 0;
  while (i < text.length && ' \n\r\t'.includes(text[i]!)) i++;
  return i;
}

/** Go's encoding/json message for a syntax error (close to, not always exactly, Go's text). */
export function goSyntaxError(text: string, err: unknown): string {
  const msg = err instanceof Error ? err.message : '';
  if (TRUNCATED.test(msg)) return 'unexpected EOF';
  const pos = errorPosition(text, err);
  if (pos >= text.length) return 'unexpected EOF';
  return `invalid character '${text[pos]}' looking for beginning of value`;
}

function goKind(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'boolean') return 'bool';
  return typeof value; // 'string' | 'number' | 'object'
}

/** Go's UnmarshalTypeError text for a top-level value of the wrong kind. */
export function goTopLevelTypeError(value: unknown, goType: string): string {
  return `json: cannot unmarshal ${goKind(value)} into Go value of type ${goType}`;
}

type GoFieldKind = 'string' | 'bool' | 'object' | 'array' | 'number';

/** JSON field name -> the kind of its Go struct field. */
export type GoFields = Readonly<Record<string, GoFieldKind>>;

/**
 * Checks the fields the simulator reads against the Go struct types; returns Go's error
 * text for the first mismatch, or null. `null` JSON values are accepted, as Go does.
 */
export function goFieldTypeError(body: Record<string, unknown>, goStruct: string, fields: GoFields): string | null {
  for (const name in fields) {
    const v = body[name];
    if (v === undefined || v === null) continue;
    const want = fields[name]!;
    const ok =
      want === 'array' ? Array.isArray(v)
      : want === 'object' ? typeof v === 'object' && !Array.isArray(v)
      : want === 'bool' ? typeof v === 'boolean'
      : typeof v === want;
    if (!ok) {
      const goType = want === 'object' ? 'map[string]interface {}' : want === 'array' ? '[]' : want === 'number' ? 'int' : want;
      return `json: cannot unmarshal ${goKind(v)} into Go struct field ${goStruct}.${name} of type ${goType}`;
    }
  }
  return null;
}

/** Python's json.JSONDecodeError repr, as MLflow embeds it in its 400 message. */
export function pythonJsonError(text: string, err: unknown): string {
  const pos = Math.min(errorPosition(text, err), text.length);
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < pos; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return `JSONDecodeError('Expecting value: line ${line} column ${pos - lineStart + 1} (char ${pos})')`;
}

export type JsonParse = { ok: true; value: unknown } | { ok: false; error: unknown };

export function parseJson(text: string): JsonParse {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, error };
  }
}

export type GoDecode = { ok: true; value: Record<string, unknown> } | { ok: false; eof: boolean; error: string };

/**
 * gin's ShouldBindJSON into a Go struct: `eof` for an empty body (each caller words that
 * differently), Go's text for syntax and type errors, `null` decoding to an empty struct.
 */
export function decodeGoJson(body: Buffer, goType: string, fields: GoFields): GoDecode {
  if (isBlank(body)) return { ok: false, eof: true, error: 'EOF' };
  const text = body.toString('utf8');
  const parsed = parseJson(text);
  if (!parsed.ok) return { ok: false, eof: false, error: goSyntaxError(text, parsed.error) };
  const v = parsed.value;
  if (v === null) return { ok: true, value: {} };
  if (!isObject(v)) return { ok: false, eof: false, error: goTopLevelTypeError(v, goType) };
  const fieldError = goFieldTypeError(v, goType.slice(goType.indexOf('.') + 1), fields);
  if (fieldError !== null) return { ok: false, eof: false, error: fieldError };
  return { ok: true, value: v };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
