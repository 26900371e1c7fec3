import { Buffer } from 'node:buffer';
import type { ClientResponse } from './front-end/client.js';
import { STATUS_LINES } from '../errors/index.js';
import { STATUS_CODES } from 'node:http';
import type { HeaderLines } from './upstream/header-lines.js';

// Indexed by status code (100-999, as the parser admits): one array load per response.
const statusCache: string[] = [];
// Header lines every response of this thread carries, each after a CRLF (listen.hsts's
// Strict-Transport-Security), or ''. uWS writes the status argument verbatim between
// "HTTP/1.1 " and a CRLF, so they ride on the cached status lines: a response pays
// nothing for them, and every path that answers (forwarded, cached, the gateway's own
// errors and health answers) carries them.
let fixedLines = '';
fillStatusCache();

function fillStatusCache(): void {
  for (const [k, v] of Object.entries(STATUS_LINES)) statusCache[Number(k)] = v + fixedLines;
}

/** Sets the header lines of every response (`name: value` each); once, before the thread serves. */
export function setFixedHeaders(lines: readonly string[]): void {
  fixedLines = lines.map((l) => `\r\n${l}`).join('');
  statusCache.length = 0;
  statusBytes.length = 0;
  fillStatusCache();
}

/** "200 OK" (and the fixed header lines) for uWS's writeStatus, cached so a response does not build the string. */
export function statusLine(status: number): string {
  let line = statusCache[status];
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}${fixedLines}`;
    statusCache[status] = line;
  }
  return line;
}

// uWS.js converts a string argument through a malloc'd UTF-8 copy (String::Utf8Value); a
// view of bytes written into one scratch buffer costs neither. It also keeps bytes 0x80-0xFF
// of upstream header values as they arrived, where a UTF-8 conversion of their latin1
// decoding would double them. uWS writes the status argument verbatim after "HTTP/1.1 ",
// so the whole head (status line and header lines) goes in one writeStatus call.
let headScratch = Buffer.allocUnsafe(16 * 1024);
let headEnd = 0;

// Status lines as bytes, by code: copied by a loop, which costs less than a native write of
// a dozen characters.
const statusBytes: Uint8Array[] = [];

/** Starts a response head in the scratch buffer: "<status> <reason>". */
export function headStart(status: number): void {
  headStartWith(statusBytes[status] ??= Buffer.from(statusLine(status), 'latin1'));
}

/** Starts a response head with `bytes`: a status line, or what a previous head began with (see headCopy). */
export function headStartWith(bytes: Uint8Array): void {
  headEnd = 0;
  headBytes(bytes);
}

/** The head built so far, copied (Buffer#slice would share the scratch): for headStartWith. */
export function headCopy(): Uint8Array {
  return Uint8Array.prototype.slice.call(headScratch, 0, headEnd);
}

// Up to this length a loop over char codes costs less than Buffer#write, which crosses into
// C++ and, for the rope a concatenation makes, flattens it into a new string first.
const SHORT_TEXT = 48;

/** Appends latin1 text (a string's code units above 0xFF must not occur: header text is latin1). */
export function headText(text: string): void {
  const n = text.length;
  headRoom(n);
  if (n > SHORT_TEXT) {
    headEnd += headScratch.write(text, headEnd, 'latin1');
    return;
  }
  const scratch = headScratch;
  const at = headEnd;
  for (let i = 0; i < n; i++) scratch[at + i] = text.charCodeAt(i);
  headEnd = at + n;
}

// From this length TypedArray#set (a memmove) costs less than a byte loop: ~20 ns against
// ~27 for a 25-byte header line, measured on Node 20.
const SHORT_BYTES = 16;

/** Appends bytes encoded ahead of time (the gateway's own header names and constant lines). */
export function headBytes(bytes: Uint8Array): void {
  const n = bytes.length;
  headRoom(n);
  const scratch = headScratch;
  const at = headEnd;
  if (n >= SHORT_BYTES) scratch.set(bytes, at);
  else for (let i = 0; i < n; i++) scratch[at + i] = bytes[i]!;
  headEnd = at + n;
}

/** Appends a non-negative integer in decimal without making its string. */
export function headUint(value: number): void {
  if (!(value >= 0 && value <= 0x7fffffff) || value % 1 !== 0) {
    headText(String(value));
    return;
  }
  let digits = 1;
  for (let v = value; v >= 10; v = (v / 10) | 0) digits++;
  headRoom(digits);
  const scratch = headScratch;
  let at = headEnd + digits;
  headEnd = at;
  let v = value | 0;
  do {
    const q = (v / 10) | 0;
    scratch[--at] = 0x30 + v - q * 10;
    v = q;
  } while (v > 0);
}

/** Appends upstream header line i as it arrived, with the CRLF before it. */
export function headLine(lines: HeaderLines, i: number): void {
  headRoom(lines.lineBytes(i));
  headEnd = lines.copyLine(i, headScratch, headEnd);
}

// Views of the scratch buffer by length, each made once: the heads of one workload repeat
// a few lengths, and a view made per response is an allocation and, later, a collection.
// uWS copies what it is given before writeStatus returns, so a view is never held.
const CACHED_VIEW_MAX = 2048;
let headViews: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(CACHED_VIEW_MAX + 1).fill(undefined);

/** The head built since headStart, for one writeStatus call (valid until the next headStart). */
export function headView(): Uint8Array {
  const n = headEnd;
  if (n > CACHED_VIEW_MAX) return new Uint8Array(headScratch.buffer, headScratch.byteOffset, n);
  return headViews[n] ??= new Uint8Array(headScratch.buffer, headScratch.byteOffset, n);
}

function headRoom(bytes: number): void {
  if (headEnd + bytes <= headScratch.length) return;
  const bigger = Buffer.allocUnsafe(Math.max(headScratch.length * 2, headEnd + bytes));
  headScratch.copy(bigger, 0, 0, headEnd);
  headScratch = bigger;
  headViews = new Array<Uint8Array | undefined>(CACHED_VIEW_MAX + 1).fill(undefined);
}

/**
 * Ends a response to a HEAD request (or a 204/304) without a body, announcing
 * `contentLength` when it is known (>= 0). uWS 20.30's `endWithoutBody(n)` writes
 * `Content-Length: n` and then waits for those n bytes, dropping the keep-alive connection
 * at the next request; so the header is written here and uWS is given no length.
 */
export function endWithoutBody(res: ClientResponse, contentLength: number, closeConnection = false): void {
  if (closeConnection) {
    res.endWithoutBody(0, true);
    return;
  }
  if (contentLength >= 0) res.writeHeader('content-length', String(contentLength));
  res.endWithoutBody();
}

// A refused request's body up to this size is read and dropped, so that the connection
// stays open for the client's next request (a rate-limited client retries on it); a larger
// or unbounded (chunked) one is not worth reading: the connection closes after the answer.
const DRAIN_MAX_BYTES = 64 * 1024;

/** Whether an answer given before the request body was read must close the connection. */
export function closesUnread(contentLength: number, chunked: boolean): boolean {
  return chunked || contentLength > DRAIN_MAX_BYTES;
}

/** The x-sluice-cache response header every gateway response carries once. */
/** `coalesced`: the answer of an identical request in flight, shared (a miss for the cache's counts). */
export type CacheStatus = 'hit' | 'miss' | 'coalesced' | 'bypass';

/** `Retry-After: 1` for refusals whose cause may pass at once (no replica, queue, store down). */
export const RETRY_AFTER = Object.freeze([['retry-after', '1'] as const]);
/**
 * Tells the OpenAI SDKs (Python and JavaScript, which retry any 5xx twice by default) not to
 * retry: the answer to a request that ran out of its total_timeout_ms, which a retry would
 * only repeat at the model's full cost, each time, before the client hears of it.
 */
export const NO_RETRY = Object.freeze([['x-should-retry', 'false'] as const]);
/** The codings a request body may come in (RFC 9110 12.5.3): none, on a 415 for a compressed one. */
export const IDENTITY_ONLY = Object.freeze([['accept-encoding', 'identity'] as const]);

/** How an answer is sent: close the connection after it, extra headers, HEAD (no body), the x-sluice-cache value, its content type. */
type AnswerOptions = [closeConnection?: boolean, headers?: ReadonlyArray<readonly [string, string]>, headRequest?: boolean, cache?: CacheStatus, contentType?: string];

/**
 * A JSON answer the gateway makes itself (an error: `{"error":{"code","message","request_id"}}`,
 * DESIGN.md, or Ollama's shape at its root API; the front door's model lists); HEAD gets the
 * head only. An error answered before any cache decision is a bypass. Returns the body bytes sent.
 */
export function writeJsonResponse(
  res: ClientResponse, status: number, body: string, requestId: string, ...[closeConnection = false, headers, headRequest = false, cache = 'bypass', contentType = 'application/json']: AnswerOptions
): number {
  const bytes = Buffer.byteLength(body);
  res.cork(() => {
    res.writeStatus(statusLine(status)).writeHeader('content-type', contentType).writeHeader('x-request-id', requestId).writeHeader('x-sluice-cache', cache);
    if (headers !== undefined) for (const [k, v] of headers) res.writeHeader(k, v);
    if (headRequest) endWithoutBody(res, bytes, closeConnection);
    else res.end(body, closeConnection);
  });
  return headRequest ? 0 : bytes;
}
