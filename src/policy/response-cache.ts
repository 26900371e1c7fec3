// The response cache of one deployment: exact-match keys, LRU by bytes, TTL. It lives in
// memory in each worker thread, so `max_bytes` is per worker. With Redis configured, a
// second tier (redis-cache.ts) shares entries between workers and gateway instances; an
// entry found there is kept here too, with the time it was first stored.

import { Buffer, isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { CacheConfig } from '../config/index.js';
import { bytesAt, skipSpace, wordSkips } from '../json-scan.js';
import { reportsFailure } from './token-counter.js';

export interface CachedResponse {
  readonly status: number;
  /** Upstream header names and values, as the exchange's onResponseHead takes them. */
  readonly headers: readonly string[];
  /** -1: sent chunked (a stream), replayed chunk by chunk in the same framing. */
  readonly contentLength: number;
  readonly chunks: readonly Buffer[];
  readonly bytes: number;
  readonly storedAt: number;
  readonly expiresAt: number;
}

/** Why a request may be served from the cache, decided from its head alone. */
export interface CacheWant {
  /** An LLM generation: cacheable only when deterministic, unless the client asked. */
  readonly llm: boolean;
  /** `x-sluice-cache: on` or `Cache-Control: max-age`. */
  readonly asked: boolean;
  /** The client's max-age in ms: older entries are not served to it; -1 when not given. */
  readonly maxAgeMs: number;
  /** `Cache-Control: no-cache`: never answered from the cache, but its answer may be stored. */
  readonly refresh: boolean;
}

const DEFAULT_WANT: CacheWant = Object.freeze({ llm: false, asked: false, maxAgeMs: -1, refresh: false });
const LLM_WANT: CacheWant = Object.freeze({ llm: true, asked: false, maxAgeMs: -1, refresh: false });
const ASKED_WANT: CacheWant = Object.freeze({ llm: false, asked: true, maxAgeMs: -1, refresh: false });

const MAX_AGE = /(?:^|[\s,])max-age\s*=\s*"?(\d+)/i;
const NO_CACHE = /(?:^|[\s,])no-cache(?:$|[\s,=])/i;

/**
 * Whether a request is a cache candidate (its body must then be read before the key is
 * known), from what the head says; null when it is not (bypass). `path` has no query.
 */
export function cacheWant(method: string, path: string, cacheControl: string, xCache: string, contentLength: number, policy: CacheConfig): CacheWant | null {
  if (method !== 'POST' && method !== 'GET') return null;
  if (contentLength > policy.max_request_bytes) return null;
  const want = headWant(method, path, xCache, cacheControl === '' ? -1 : maxAgeOf(cacheControl));
  if (want === null || cacheControl === '' || !NO_CACHE.test(cacheControl)) return want;
  return { llm: want.llm, asked: want.asked, maxAgeMs: want.maxAgeMs, refresh: true };
}

/** The request's max-age in ms, -1 without one; -2 for no-store (a full bypass). */
function maxAgeOf(cacheControl: string): number {
  const cc = cacheControl.toLowerCase();
  if (cc.includes('no-store')) return -2;
  const m = MAX_AGE.exec(cc);
  return m === null ? -1 : Number(m[1]) * 1000;
}

function headWant(method: string, path: string, xCache: string, maxAgeMs: number): CacheWant | null {
  if (maxAgeMs === -2) return null;
  if (xCache !== '') {
    const v = xCache.toLowerCase();
    if (v === 'off') return null;
    if (v === 'on') return maxAgeMs === -1 ? ASKED_WANT : { llm: false, asked: true, maxAgeMs, refresh: false };
  }
  if (maxAgeMs !== -1) return { llm: false, asked: true, maxAgeMs, refresh: false };
  if (method !== 'POST') return null;
  if (path === '/invocations') return DEFAULT_WANT;
  return isLlmPath(path) ? LLM_WANT : null;
}

/** The generation endpoints. Comparisons, not a Set: a path is a new string per request, which a Set lookup would hash first. */
function isLlmPath(path: string): boolean {
  switch (path) {
    case '/v1/chat/completions':
    case '/v1/completions':
    case '/api/chat':
    case '/api/generate':
      return true;
    default:
      return false;
  }
}

// Callers by their credentials, as the digest their cache keys start with: a repeated
// caller costs no SHA-256. Bounded per worker thread; oldest first out.
const CALLER_MEMO_MAX = 4096;
const callerMemo = new Map<string, string>();

/**
 * The cache key of `key` for one caller: `identity` is what tells callers apart (their
 * sluice key's name and the credentials forwarded upstream), '' for an anonymous caller.
 * Hashed, so no credential ends up in a key (keys are Redis key names in the shared tier).
 */
export function callerKey(identity: string, key: string): string {
  if (identity === '') return key;
  let digest = callerMemo.get(identity);
  if (digest === undefined) {
    digest = createHash('sha256').update(identity).digest('base64url');
    if (callerMemo.size >= CALLER_MEMO_MAX) callerMemo.delete(callerMemo.keys().next().value!);
    callerMemo.set(identity, digest);
  }
  return `${digest} ${key}`;
}

// Keys of recent small bodies, by their exact bytes: a repeated request (the one a cache
// exists for) skips the JSON parse, the canonical form and the SHA-256. Bounded in entries
// and body size, per worker thread; oldest first out.
const MEMO_MAX_ENTRIES = 1024;
const MEMO_MAX_BODY = 4096;
const keyMemo = new Map<string, string | null>();

/**
 * The cache key of a candidate whose whole body is `body`, or null when it must bypass
 * (an LLM request that is not deterministic). JSON bodies are hashed in a canonical form
 * (sorted keys, no whitespace) so that equal documents share an entry, when that form
 * loses nothing of them (readsBackExactly); others by their bytes.
 */
export function cacheKey(want: CacheWant, method: string, pathQuery: string, body: Buffer): string | null {
  // Most generations are sampled (a temperature above 0, no seed): a scan of the bytes
  // tells them apart without building a memo key, parsing or hashing.
  if (want.llm && !want.asked && surelySampled(body)) return null;
  if (body.length > MEMO_MAX_BODY) return computeCacheKey(want, method, pathQuery, body);
  // The bypass decision depends on whether a non-deterministic LLM request may be cached.
  const memoKey = `${want.llm && !want.asked ? 'L' : 'A'}${method} ${pathQuery}\n${body.toString('latin1')}`;
  const known = keyMemo.get(memoKey);
  if (known !== undefined) return known;
  const key = computeCacheKey(want, method, pathQuery, body);
  if (keyMemo.size >= MEMO_MAX_ENTRIES) keyMemo.delete(keyMemo.keys().next().value!);
  keyMemo.set(memoKey, key);
  return key;
}

function computeCacheKey(want: CacheWant, method: string, pathQuery: string, body: Buffer): string | null {
  let json: unknown;
  if (looksLikeJson(body)) {
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined;
    }
  }
  if (want.llm && !want.asked && !isDeterministic(json)) return null;
  const hash = createHash('sha256');
  const canonical = json === undefined || !readsBackExactly(body) ? null : canonicalAt(json, 0);
  hash.update(canonical ?? body);
  return `${method} ${pathQuery} ${hash.digest('base64')}`;
}

function looksLikeJson(body: Buffer): boolean {
  const c = body[skipSpace(body, 0)];
  return c === 0x7b || c === 0x5b; // '{' or '['
}

/**
 * Whether JSON.parse kept all of `body` that a model server may read, so that its canonical
 * form may stand for it in the key: the text is UTF-8 (each invalid byte decodes to U+FFFD,
 * which would merge a Latin-1 "café" with "cafè"), and every number reads back as written
 * (JSON.parse makes each a double: 9007199254740993 becomes ...992, 1.0 becomes 1, and a
 * server's own parser, Python's json say, tells them apart). Else the key hashes the bytes
 * as sent: equal documents written differently then miss each other, different ones never
 * share an entry. Run once per distinct body (the key memo).
 */
function readsBackExactly(body: Buffer): boolean {
  if (!isUtf8(body)) return false;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (inString) {
      if (c === 0x5c) i++; // a backslash: the escaped byte cannot end the string
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      // '-' or a digit outside a string starts a number: it ends at the first byte no number has.
      let end = i + 1;
      while (end < body.length && isNumberByte(body[end]!)) end++;
      const text = body.toString('latin1', i, end);
      if (String(Number(text)) !== text) return false;
      i = end - 1;
    }
  }
  return true;
}

/** A digit, '.', 'e', 'E', '+' or '-': the bytes after a JSON number's first. */
function isNumberByte(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

const SEED = Buffer.from('"seed"');
const TEMPERATURE = Buffer.from('"temperature"');

// The scan looks at every sixth byte where it can (json-scan's wordSkips): half the time
// of a byte-by-byte pass over a chat body (~0.45 vs ~0.95 us for 459 bytes, measured).
const { width: WINDOW, skip: SKIP, afterLook: SKIP_AFTER_LOOK } = wordSkips(['"seed"', '"tempe']);

/**
 * Whether the number at body[start, end) is finite and not 0, for surelySampled. The usual
 * temperature (a sign, a few digits and a '.') is answered from its digits, without a
 * string or strtod: 0 only when every digit is. Had it two dots, the body would not be
 * JSON, so bypassed whatever this says. Other shapes (an exponent, many digits) go through
 * Number().
 */
function nonZeroNumber(body: Buffer, start: number, end: number): boolean {
  if (end - start <= SHORT_NUMBER) {
    let i = start;
    if (body[i] === 0x2d || body[i] === 0x2b) i++;
    let digits = 0;
    let nonZero = false;
    for (; i < end; i++) {
      const c = body[i]!;
      if (c >= 0x30 && c <= 0x39) {
        digits++;
        if (c !== 0x30) nonZero = true;
      } else if (c !== 0x2e) break;
    }
    if (i === end && digits > 0) return nonZero;
  }
  const value = end === start ? Number.NaN : Number(body.toString('latin1', start, end));
  return value !== 0 && Number.isFinite(value);
}

/** Up to this many characters, a number without an exponent can neither overflow nor round to 0. */
const SHORT_NUMBER = 20;

/**
 * True only when the body cannot be deterministic (isDeterministic false): no `"seed"`
 * anywhere, and every `"temperature":` is followed by a number other than 0. Anything it
 * cannot read (a temperature of null, a key inside a string) leaves the answer to the
 * parse.
 */
function surelySampled(body: Buffer): boolean {
  const n = body.length;
  let i = WINDOW - 1;
  while (i < n) {
    const last = body[i]!;
    const skip = SKIP[last]!;
    if (skip !== 0) {
      i += skip;
      continue;
    }
    const at = i - (WINDOW - 1);
    if (body[at] === 0x22) {
      const c = body[at + 1];
      if (c === 0x73) {
        if (bytesAt(body, at, SEED)) return false;
      } else if (c === 0x74 && bytesAt(body, at, TEMPERATURE)) {
        let k = skipSpace(body, at + TEMPERATURE.length);
        if (body[k] === 0x3a) {
          k = skipSpace(body, k + 1);
          const start = k;
          for (let d = body[k]; d !== undefined && ((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x2d || d === 0x2b || d === 0x65 || d === 0x45); d = body[++k]);
          if (!nonZeroNumber(body, start, k)) return false;
          // The next window starts after the number.
          i = k + WINDOW - 1;
          continue;
        }
      }
    }
    i += SKIP_AFTER_LOOK[last]!;
  }
  return true;
}

/** Temperature 0 (OpenAI top level, Ollama `options`) or a fixed seed. */
function isDeterministic(json: unknown): boolean {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return false;
  const o = json as Record<string, unknown>;
  if (o.temperature === 0 || hasSeed(o.seed)) return true;
  const opts = o.options;
  if (typeof opts !== 'object' || opts === null) return false;
  const oo = opts as Record<string, unknown>;
  return oo.temperature === 0 || hasSeed(oo.seed);
}

function hasSeed(v: unknown): boolean {
  return typeof v === 'number' || (typeof v === 'string' && v !== '');
}

/**
 * Past this depth a body is keyed by its bytes: its canonical form is built with one call per
 * level, and a body nested some thousands deep (400 KB of brackets) overflowed the stack,
 * which ended the worker. Requests to models nest a few levels.
 */
const MAX_CANONICAL_DEPTH = 1000;

/**
 * `v` with its object keys sorted, as JSON: one form for equal values, whatever their keys'
 * order (a deployment's spec digest). Nested deeper than MAX_CANONICAL_DEPTH, as JSON.stringify gives it.
 */
export function canonicalJson(v: unknown): string {
  return canonicalAt(v, 0) ?? JSON.stringify(v);
}

/** canonicalJson of `v` at `depth`; null when it is nested deeper than MAX_CANONICAL_DEPTH. */
function canonicalAt(v: unknown, depth: number): string | null {
  if (typeof v !== 'object' || v === null) return JSON.stringify(v);
  if (depth === MAX_CANONICAL_DEPTH) return null;
  const array = Array.isArray(v);
  const o = v as Record<string, unknown>;
  const keys = array ? null : Object.keys(o).sort();
  const n = keys === null ? (v as unknown[]).length : keys.length;
  let out = array ? '[' : '{';
  for (let i = 0; i < n; i++) {
    const item = canonicalAt(keys === null ? (v as unknown[])[i] : o[keys[i]!], depth + 1);
    if (item === null) return null;
    if (i > 0) out += ',';
    out += keys === null ? item : `${JSON.stringify(keys[i])}:${item}`;
  }
  return out + (array ? ']' : '}');
}

/** How much of a stream's end is read for an error event: the last event, and a `[DONE]` after it. */
const STREAM_TAIL_BYTES = 4096;

/**
 * A streamed answer (chunked: SSE, NDJSON) whose server failed after its 200 head: it said so
 * in the stream, among its last events (reportsFailure). Such an answer is no answer to store:
 * replayed, it would fail every identical request for the entry's lifetime. Read once per
 * stream about to be stored, over its last STREAM_TAIL_BYTES.
 */
export function streamEndsInError(chunks: readonly Buffer[]): boolean {
  let from = chunks.length;
  let bytes = 0;
  while (from > 0 && bytes < STREAM_TAIL_BYTES) bytes += chunks[--from]!.length;
  const tail = from === chunks.length - 1 ? chunks[from]! : Buffer.concat(chunks.slice(from));
  let lineStart = Math.max(0, tail.length - STREAM_TAIL_BYTES);
  for (let lf = tail.indexOf(0x0a, lineStart); lineStart < tail.length; lf = tail.indexOf(0x0a, lineStart)) {
    const end = lf === -1 ? tail.length : lf;
    if (reportsFailure(tail, lineStart, end)) return true;
    lineStart = end + 1;
  }
  return false;
}

const CACHE_CONTROL = 'cache-control';

/**
 * How long a response may be kept, from what its upstream said (RFC 9111): 0 when it must
 * not be stored (`Cache-Control: no-store` or `private`: sluice is a shared cache, 5.2.2.5
 * and 5.2.2.7; a `Set-Cookie`; a freshness lifetime already spent; a `Vary` naming a request header that
 * is not in `keyed`, the lower-case names whose values the key holds, since its entry would
 * answer requests that differ there, 4.1: a gzip body to a client that never accepted one),
 * else `ttlMs`, or the response's `s-maxage` (which wins for a shared cache) or `max-age`
 * when shorter, less its `Age`. `headers` as [name, value, ...]. Read once per upstream
 * response head; a head without Cache-Control and Vary (the usual LLM answer) costs a
 * length compare per header.
 */
export function storableForMs(headers: readonly string[], ttlMs: number, keyed: readonly string[]): number {
  let maxAge = -1;
  let sMaxAge = -1;
  let age = 0;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name.length === 3) {
      if (name.toLowerCase() === 'age') age = seconds(headers[i + 1]!.trim());
      continue;
    }
    if (name.length === 4) {
      if (name.toLowerCase() === 'vary' && !varyKeyed(headers[i + 1]!, keyed)) return 0;
      continue;
    }
    // A cookie is one caller's (a session): replayed, it went to every caller sharing the key,
    // anonymous ones included. nginx's proxy_cache stores no such response either.
    if (name.length === 10) {
      if (name.toLowerCase() === 'set-cookie') return 0;
      continue;
    }
    if (name.length !== CACHE_CONTROL.length || name.toLowerCase() !== CACHE_CONTROL) continue;
    for (const part of headers[i + 1]!.split(',')) {
      const eq = part.indexOf('=');
      const directive = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
      if (directive === 'no-store' || directive === 'private') return 0;
      if (eq === -1) continue;
      if (directive === 'max-age') maxAge = seconds(part.slice(eq + 1).trim().replace(/^"|"$/g, ''));
      else if (directive === 's-maxage') sMaxAge = seconds(part.slice(eq + 1).trim().replace(/^"|"$/g, ''));
    }
  }
  const lifetime = sMaxAge >= 0 ? sMaxAge : maxAge;
  if (lifetime < 0) return ttlMs;
  return Math.max(0, Math.min(ttlMs, (lifetime - Math.max(0, age)) * 1000));
}

/**
 * The header a stored answer names the fallback that made it in, for its hits to say so
 * too (a fallback's answer is stored under the addressed deployment's key). An x-sluice-*
 * header, which no answer is sent with as stored: the gateway's own x-sluice-* lines are
 * the ones a client gets, so an instance that does not read it drops it.
 */
const SERVED_BY = 'x-sluice-served-by';

function isServedBy(name: string): boolean {
  return name.length === SERVED_BY.length && name.toLowerCase() === SERVED_BY;
}

/**
 * `headers` as stored for an answer `servedBy` made (a fallback's id; null: the addressed
 * deployment's own): naming it, and never the upstream's own header of that name. The
 * array itself when nothing changes.
 */
export function storedHeaders(headers: readonly string[], servedBy: string | null): readonly string[] {
  let kept: string[] | null = null;
  for (let i = 0; i < headers.length; i += 2) {
    if (isServedBy(headers[i]!)) kept ??= headers.slice(0, i);
    else if (kept !== null) kept.push(headers[i]!, headers[i + 1]!);
  }
  if (servedBy === null) return kept ?? headers;
  return [...(kept ?? headers), SERVED_BY, servedBy];
}

/** The fallback that made a stored answer (storedHeaders), or null. */
export function servedByOf(headers: readonly string[]): string | null {
  for (let i = 0; i < headers.length; i += 2) if (isServedBy(headers[i]!)) return headers[i + 1]!;
  return null;
}

/**
 * A stored answer's headers as a hit sends them, with `Age`: the seconds since its upstream
 * made it (the Age it came with, plus its time in the cache), which RFC 9111 section 4 requires
 * of an answer served from a cache; without it a cache downstream would keep it fresh for
 * its whole max-age once more. `storedAt` and `now` in ms.
 */
export function headersWithAge(headers: readonly string[], storedAt: number, now: number): string[] {
  let age = Math.max(0, Math.floor((now - storedAt) / 1000));
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name.length === 3 && name.toLowerCase() === 'age') {
      age += seconds(headers[i + 1]!.trim());
      continue;
    }
    out.push(name, headers[i + 1]!);
  }
  out.push('age', String(age));
  return out;
}

/** Whether every header a Vary value names is one whose value the key holds (`*`: never). */
function varyKeyed(value: string, keyed: readonly string[]): boolean {
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase();
    if (name !== '' && !keyed.includes(name)) return false;
  }
  return true;
}

/** A delta-seconds value (RFC 9111 1.2.2); an invalid one is 0 (stale: not stored). */
function seconds(text: string): number {
  return /^\d+$/.test(text) ? Number(text) : 0;
}

/** Bytes an entry is charged for: its body, its headers and its key. */
function entryBytes(key: string, headers: readonly string[], bodyBytes: number): number {
  let n = key.length + bodyBytes + 64;
  for (const h of headers) n += h.length;
  return n;
}

export class ResponseCache {
  policy: CacheConfig;
  // A Map iterates in insertion order: re-inserting on a hit makes its first key the LRU.
  readonly #entries = new Map<string, CachedResponse>();
  #bytes = 0;

  constructor(policy: CacheConfig) {
    this.policy = policy;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** A live entry no older than `maxAgeMs` (when >= 0), marked most recently used. */
  get(key: string, now: number, maxAgeMs: number): CachedResponse | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) return undefined;
    if (now >= e.expiresAt) {
      this.#delete(key, e);
      return undefined;
    }
    if (maxAgeMs >= 0 && now - e.storedAt > maxAgeMs) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, e);
    return e;
  }

  /**
   * Stores a complete response when it fits the entry limit, evicting the least recently
   * used. It expires `ttlMs` (ttl_ms, or less as its upstream said: storableForMs) after
   * `storedAt` (now, or when another instance stored it).
   */
  set(key: string, status: number, headers: readonly string[], contentLength: number, chunks: readonly Buffer[], bodyBytes: number, storedAt: number, ttlMs = this.policy.ttl_ms): boolean {
    const p = this.policy;
    const bytes = entryBytes(key, headers, bodyBytes);
    if (bytes > p.max_entry_bytes || bytes > p.max_bytes) return false;
    const old = this.#entries.get(key);
    if (old !== undefined) this.#delete(key, old);
    this.#evictTo(p.max_bytes - bytes);
    this.#entries.set(key, { status, headers, contentLength, chunks, bytes, storedAt, expiresAt: storedAt + ttlMs });
    this.#bytes += bytes;
    return true;
  }

  /** Applies a new policy (a route table snapshot): a smaller max_bytes evicts at once. */
  reconfigure(policy: CacheConfig): void {
    this.policy = policy;
    this.#evictTo(policy.max_bytes);
  }

  #evictTo(limit: number): void {
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= limit) return;
      this.#delete(k, e);
    }
  }

  #delete(key: string, e: CachedResponse): void {
    this.#entries.delete(key);
    this.#bytes -= e.bytes;
  }
}
