// The access log line: one shape for every request, whoever answered it (fields that do
// not apply are null), as pino would print it (`level`, `time`, `pid`, `worker`, `name`,
// `msg: "request"`) so that one parser reads every line sluice writes. The line is built
// by concatenation from pre-serialised parts, not as an object for a serialiser: at tens
// of thousands of requests a second an object, its redaction pass and pino's buffer cost
// a third of the data plane's throughput. No field can carry a secret: `path` has no query
// string (which may), and a key appears only as its label.

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
  // A line is three cached runs of fields with the few values of each request between
  // them. Writing a line flattens its string, at a cost that grows with the number of
  // pieces it was concatenated from: ~35 pieces cost ~0.25 us more than 7 (measured). Each
  // run is rebuilt, and flattened once, when one of its values changes.
  /** `{"level":…,"time":…,…,"request_id":`, for the millisecond #timeMs. */
  #lead = '';
  #timeMs = -1;
  /** `{"level":"info","time":"2026-12-06T21:44:10.`: the ISO time up to its milliseconds, for the second #second. */
  #secondLead = '';
  #second = -1;
  /** `,"method":…,"path":…,"client":…,"route":…,"upstream":…,"status":…,"duration_ms":`. */
  #middle = '';
  #method = '';
  #path = '';
  #client = '';
  #route: string | null = null;
  #upstream: string | null = null;
  #status = -1;
  /** `,"request_bytes":…` to the end of the line. */
  #tail = '';
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
    error: ErrorCode | null, costUsd: number | null,
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
      this.#lead = flat(this.#secondLead + MILLISECONDS[ms - second * 1000] + 'Z"' + this.#bindings + ',"request_id":');
    }
    if (method !== this.#method || path !== this.#path || client !== this.#client || route !== this.#route || upstream !== this.#upstream || status !== this.#status) {
      this.#method = method;
      this.#path = path;
      this.#client = client;
      this.#route = route;
      this.#upstream = upstream;
      this.#status = status;
      this.#middle = flat(
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
      this.#tail = flat(
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
    this.#writer.write(
      this.#lead + jsonString(requestId) + this.#middle + millis(Math.round(seconds * 1e6)) +
      ',"ttfb_ms":' + (ttfbMs === null ? 'null' : millis(Math.round(ttfbMs * 1e3))) + this.#tail,
    );
  }
}

/** `text` as one flat string: V8 flattens a concatenation in place the first time a character is read. */
function flat(text: string): string {
  text.charCodeAt(0);
  return text;
}

// Milliseconds with up to three decimals, as `Math.round(us) / 1e3` prints them, from a
// whole number of microseconds: a fraction's NumberToString (the shortest round trip of a
// double) cost ~0.15 us a field under load, the integer part and a table look-up do not.
const FRACTIONS: readonly string[] = Array.from({ length: 1000 }, (_, f) => (f === 0 ? '' : '.' + String(f).padStart(3, '0').replace(/0+$/, '')));

/** '000' to '999'. */
const MILLISECONDS: readonly string[] = Array.from({ length: 1000 }, (_, ms) => String(ms).padStart(3, '0'));

function millis(us: number): string {
  const ms = Math.floor(us / 1000);
  return ms + FRACTIONS[us - ms * 1000]!;
}

/**
 * `value` as a JSON string. Request ids are sluice's own or a client's header value,
 * printable ASCII as a rule: one pass over their characters instead of JSON.stringify's
 * runtime call, which escapes the rest.
 */
function jsonString(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return JSON.stringify(value);
  }
  return '"' + value + '"';
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
