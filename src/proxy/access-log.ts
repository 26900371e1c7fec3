// The access log line: one shape for every request, whoever answered it (fields that do
// not apply are null), as pino would print it (`level`, `time`, `pid`, `worker`, `name`,
// `msg: "request"`) so that one parser reads every line sluice writes. The line is put
// together as bytes in the log's buffer, from runs of fields encoded when one of their
// values changes, not as an object for a serialiser: at tens of thousands of requests a
// second an object, its redaction pass and pino's buffer cost a third of the data plane's
// throughput (and a string concatenated from the runs, flattened and encoded per line,
// ~0.3 us a line against ~0.15 measured). No field can carry a secret: `path` has no query
// string (which may), and a key appears only as its label.

import { bytesAsText } from '../byte-string.js';
import type { ErrorCode } from '../errors/index.js';
import { keyLabel } from '../policy/index.js';
import type { LineWriter } from '../telemetry/index.js';
import { wallNow } from './clock.js';
import type { CacheStatus } from './respond.js';
import type { KeyRoute } from './route-table.js';

export interface AccessLogOptions {
  readonly writer: LineWriter;
  /** A line for every request (log.access), or only for failures (5xx, gateway errors). */
  readonly all: boolean;
  /** The share of successful requests logged (failures always are); 1 logs every one. */
  readonly sample: number;
  readonly worker: number;
}

export class AccessLog {
  readonly all: boolean;
  readonly #writer: LineWriter;
  readonly #sample: number;
  /** `,"pid":…,"worker":…,"name":"sluice"`: the same for every line of this thread. */
  readonly #bindings: string;
  // A line is three runs of fields, kept as UTF-8 bytes, with the few values of each
  // request between them. Each run is encoded again when one of its values changes.
  /** `{"level":…,"time":…,…,"request_id":`, for the millisecond #timeMs. */
  #lead: Uint8Array = NO_BYTES;
  #timeMs = -1;
  /** `{"level":"info","time":"2026-12-06T21:44:10.`: the ISO time up to its milliseconds, for the second #second. */
  #secondLead = '';
  #second = -1;
  /** `,"method":…,"path":…,"client":…,"route":…,"upstream":…,"status":…,"duration_ms":`. */
  #middle: Uint8Array = NO_BYTES;
  #method = '';
  #path = '';
  #client = '';
  #route: string | null = null;
  #upstream: string | null = null;
  #status = -1;
  /** `,"request_bytes":…` to the end of the line. */
  #tail: Uint8Array = NO_BYTES;
  #requestBytes = -1;
  #responseBytes = -1;
  #cache: CacheStatus | '' = '';
  #key: KeyRoute | undefined = undefined;
  #error: ErrorCode | null = null;
  #costUsd: number | null = null;
  // The JSON of each string field's last value, for the rebuilds (one field changes, the
  // others are not stringified again).
  readonly #methodJson = new LastJson();
  readonly #pathJson = new LastJson();
  readonly #clientJson = new LastJson();
  readonly #routeJson = new LastJson();
  readonly #upstreamJson = new LastJson();

  constructor(options: AccessLogOptions) {
    this.all = options.all;
    this.#writer = options.writer;
    this.#sample = options.sample;
    this.#bindings = `,"pid":${process.pid},"worker":${options.worker},"name":"sluice"`;
  }

  /** Whether a request that ended with `status` (and `error`) gets a line. */
  wants(status: number, error: ErrorCode | null): boolean {
    if (status >= 500 || error !== null) return true;
    return this.all && (this.#sample >= 1 || Math.random() < this.#sample);
  }

  /** `client`: '' when it was not read; `seconds`, `ttfbMs`: total and to the upstream head. */
  record(
    requestId: string, method: string, path: string, client: string, route: string | null, upstream: string | null, status: number,
    seconds: number, ttfbMs: number | null, requestBytes: number, responseBytes: number, cache: CacheStatus, key: KeyRoute | undefined,
    error: ErrorCode | null, costUsd: number | null, upstreamRequestId: string | null,
  ): void {
    const ms = Math.floor(wallNow());
    if (ms !== this.#timeMs) {
      this.#timeMs = ms;
      // pino's isoTime, its milliseconds from a table: under load the millisecond changes
      // ~1000 times a second, the second once (a Date and its toISOString cost ~0.6 us).
      const second = Math.floor(ms / 1000);
      if (second !== this.#second) {
        this.#second = second;
        this.#secondLead = '{"level":"info","time":"' + new Date(second * 1000).toISOString().slice(0, 20);
      }
      this.#lead = utf8(this.#secondLead + MILLISECONDS[ms - second * 1000] + 'Z"' + this.#bindings + ',"request_id":');
    }
    if (method !== this.#method || path !== this.#path || client !== this.#client || route !== this.#route || upstream !== this.#upstream || status !== this.#status) {
      this.#method = method;
      this.#path = path;
      this.#client = client;
      this.#route = route;
      this.#upstream = upstream;
      this.#status = status;
      this.#middle = utf8(
        ',"method":' + this.#methodJson.of(method) +
        ',"path":' + this.#pathJson.of(path) +
        ',"client":' + (client === '' ? 'null' : this.#clientJson.of(client)) +
        ',"route":' + (route === null ? 'null' : this.#routeJson.of(route)) +
        ',"upstream":' + (upstream === null ? 'null' : this.#upstreamJson.of(upstream)) +
        ',"status":' + status +
        ',"duration_ms":',
      );
    }
    if (requestBytes !== this.#requestBytes || responseBytes !== this.#responseBytes || cache !== this.#cache || key !== this.#key || error !== this.#error || costUsd !== this.#costUsd) {
      this.#requestBytes = requestBytes;
      this.#responseBytes = responseBytes;
      this.#cache = cache;
      this.#key = key;
      this.#error = error;
      this.#costUsd = costUsd;
      this.#tail = utf8(
        ',"request_bytes":' + requestBytes +
        ',"response_bytes":' + responseBytes +
        ',"cache":"' + cache + '"' +
        ',"key_label":' + (key === undefined ? 'null' : JSON.stringify(keyLabel(key.name, key.digest))) +
        ',"error":' + (error === null ? 'null' : '"' + error + '"') +
        // What the request cost at its deployment's prices; null when it has none or nothing was charged.
        ',"cost_usd":' + (costUsd === null ? 'null' : costUsd) +
        ',"msg":"request"}\n',
      );
    }
    const lead = this.#lead;
    const middle = this.#middle;
    const tail = this.#tail;
    const writer = this.#writer;
    const ids = (requestId.length + (upstreamRequestId === null ? 2 : upstreamRequestId.length)) * MAX_ESCAPED_BYTES + 4;
    const buf = writer.beginLine(lead.length + middle.length + TIMES_MAX_BYTES + UPSTREAM_REQUEST_ID.length + ids + tail.length);
    if (buf === null) return;
    let at = put(buf, writer.lineStart, lead);
    at = putId(buf, at, requestId);
    at = put(buf, at, middle);
    at = putMillis(buf, at, Math.round(seconds * 1e6));
    at = put(buf, at, TTFB);
    at = ttfbMs === null ? put(buf, at, NULL) : putMillis(buf, at, Math.round(ttfbMs * 1e3));
    at = put(buf, at, UPSTREAM_REQUEST_ID);
    at = upstreamRequestId === null ? put(buf, at, NULL) : putId(buf, at, upstreamRequestId);
    writer.endLine(put(buf, at, tail));
  }
}

const NO_BYTES = new Uint8Array(0);
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** The most UTF-8 bytes one UTF-16 unit of a string takes in JSON: `\u001f` (a lone surrogate, escaped by JSON.stringify, too). */
const MAX_ESCAPED_BYTES = 6;
const TTFB = utf8(',"ttfb_ms":');
const NULL = utf8('null');
const UPSTREAM_REQUEST_ID = utf8(',"upstream_request_id":');
/** The most bytes the two times take with what goes between them: two numbers (putMillis: at most 24 characters) and TTFB. */
const TIMES_MAX_BYTES = 2 * 24 + TTFB.length;

/** Buffer's native UTF-8 encoder, without Buffer#write's argument handling in front of it. */
interface Utf8Writer {
  utf8Write(text: string, offset: number, length: number): number;
}

function utf8(text: string): Uint8Array {
  return Buffer.from(text, 'utf8');
}

// From this length TypedArray#set (a memmove) costs less than a byte loop.
const SHORT_BYTES = 16;

/** Copies `bytes` into `buf` at `at`; returns the index after them. */
function put(buf: Buffer, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n >= SHORT_BYTES) buf.set(bytes, at);
  else for (let i = 0; i < n; i++) buf[at + i] = bytes[i]!;
  return at + n;
}

/**
 * Puts a request id as a JSON string; returns the index after it. An id is printable ASCII
 * as a rule (sluice's own, most clients'), copied as it is checked; any other is escaped.
 */
function putId(buf: Buffer, at: number, id: string): number {
  const start = at;
  buf[at++] = QUOTE;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === QUOTE || c === BACKSLASH) return start + (buf as unknown as Utf8Writer).utf8Write(JSON.stringify(bytesAsText(id)), start, buf.length - start);
    buf[at++] = c;
  }
  buf[at++] = QUOTE;
  return at;
}

// Milliseconds with up to three decimals, as `Math.round(us) / 1e3` prints them, from a
// whole number of microseconds: a fraction's NumberToString (the shortest round trip of a
// double) cost ~0.15 us a field under load, the integer part and a table look-up do not.
const FRACTIONS: readonly Uint8Array[] = Array.from({ length: 1000 }, (_, f) => utf8(f === 0 ? '' : '.' + String(f).padStart(3, '0').replace(/0+$/, '')));

/** '000' to '999'. */
const MILLISECONDS: readonly string[] = Array.from({ length: 1000 }, (_, ms) => String(ms).padStart(3, '0'));

/** Puts `us` microseconds as milliseconds (see FRACTIONS); returns the index after them. */
function putMillis(buf: Buffer, at: number, us: number): number {
  const ms = Math.floor(us / 1000);
  if (!(ms >= 0 && ms < 1e15)) return put(buf, at, utf8(String(us / 1000)));
  let digits = 1;
  for (let v = ms; v >= 10; v = Math.floor(v / 10)) digits++;
  let end = at + digits;
  for (let v = ms, i = end; i > at; v = Math.floor(v / 10)) buf[--i] = 0x30 + (v % 10);
  end = put(buf, end, FRACTIONS[us - ms * 1000]!);
  return end;
}

class LastJson {
  #value = '';
  #json = '""';

  of(value: string): string {
    if (value !== this.#value) {
      this.#value = value;
      this.#json = JSON.stringify(value);
    }
    return this.#json;
  }
}
