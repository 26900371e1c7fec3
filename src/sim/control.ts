// Test helpers under /_sim/, served whatever the protocol: stats, run-time config, and
// plain HTTP fixtures (echo, streaming upload/download, sleep) for gateway tests.

import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isBlank, parseJson, readBody } from './body.js';
import type { Handler, SimContext } from './context.js';
import { type Exchange, type Job, queryParam, send, sendJson } from './http.js';
import { applyTunablesPatch, SimOptionError, tunablesJson } from './options.js';
import { afterDelay } from './stream.js';

function sendError(ex: Exchange, status: number, message: string): void {
  sendJson(ex.res, status, { error: message });
}

const stats: Handler = (sim, ex) => sendJson(ex.res, 200, sim.stats);

const getConfig: Handler = (sim, ex) => sendJson(ex.res, 200, tunablesJson(sim.tunables));

function onConfigBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const parsed = isBlank(raw) ? { ok: true as const, value: {} } : parseJson(raw.toString('utf8'));
  if (!parsed.ok) {
    sendError(ex, 400, 'config body is not valid JSON');
    return;
  }
  try {
    sim.configure(applyTunablesPatch(sim.tunables, parsed.value));
  } catch (err) {
    if (!(err instanceof SimOptionError)) throw err;
    sendError(ex, 400, err.message);
    return;
  }
  sendJson(ex.res, 200, tunablesJson(sim.tunables));
}

const postConfig: Handler = (sim, ex) => readBody(sim, ex, onConfigBody);

const reset: Handler = (sim, ex) => {
  sim.stats.reset();
  sendJson(ex.res, 200, sim.stats);
};

/** Header names lower-cased, values as received; a repeated header becomes a list. */
function receivedHeaders(req: IncomingMessage): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

const echo: Handler = (_sim, ex) => {
  const req = ex.req;
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  req.on('end', () => {
    sendJson(ex.res, 200, { method: req.method, url: req.url, headers: receivedHeaders(req), body_bytes: bytes });
  });
};

const upload: Handler = (_sim, ex) => {
  const req = ex.req;
  const hash = createHash('sha256');
  let bytes = 0;
  // Each chunk is hashed and dropped: memory stays flat whatever the body size.
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => {
    sendJson(ex.res, 200, { bytes, sha256: hash.digest('hex') });
  });
};

const PATTERN_PERIOD = 251;
const DEFAULT_CHUNK = 64 * 1024;
const MAX_CHUNK = 1024 * 1024;
let pattern: Buffer | null = null;

/** Byte i is i % 251; long enough that any chunk is a view into it, never a copy. */
function patternBuffer(): Buffer {
  if (pattern === null) {
    const buf = Buffer.allocUnsafe(PATTERN_PERIOD * Math.ceil((MAX_CHUNK + PATTERN_PERIOD) / PATTERN_PERIOD));
    for (let i = 0; i < buf.length; i++) buf[i] = i % PATTERN_PERIOD;
    pattern = buf;
  }
  return pattern;
}

class Download implements Job {
  readonly tokensSent = 0;
  readonly #ex: Exchange;
  readonly #total: number;
  readonly #chunk: number;
  readonly #onDrain: () => void;
  #sent = 0;
  #done = false;

  constructor(ex: Exchange, total: number, chunk: number) {
    this.#ex = ex;
    this.#total = total;
    this.#chunk = chunk;
    this.#onDrain = this.pump.bind(this);
  }

  /** Writes until the socket pushes back, then waits for 'drain': bounded memory. */
  pump(): void {
    const res = this.#ex.res;
    const buf = patternBuffer();
    while (!this.#done && this.#sent < this.#total) {
      const n = Math.min(this.#chunk, this.#total - this.#sent);
      const offset = this.#sent % PATTERN_PERIOD;
      this.#sent += n;
      if (!res.write(buf.subarray(offset, offset + n))) {
        res.once('drain', this.#onDrain);
        return;
      }
    }
    if (!this.#done) {
      this.#done = true;
      res.end();
    }
  }

  abort(): void {
    if (this.#done) return;
    this.#done = true;
    this.#ex.res.off('drain', this.#onDrain);
  }
}

function nonNegativeInt(text: string | null, fallback: number): number | null {
  if (text === null) return fallback;
  const n = Number(text);
  return text.trim() !== '' && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

const download: Handler = (_sim, ex) => {
  const total = nonNegativeInt(queryParam(ex.query, 'bytes'), 0);
  const chunk = nonNegativeInt(queryParam(ex.query, 'chunk'), DEFAULT_CHUNK);
  if (total === null) return sendError(ex, 400, 'bytes must be a non-negative integer');
  if (chunk === null || chunk < 1 || chunk > MAX_CHUNK) return sendError(ex, 400, `chunk must be an integer 1..${MAX_CHUNK}`);
  ex.res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  const job = new Download(ex, total, chunk);
  ex.job = job;
  job.pump();
};

const sleep: Handler = (_sim, ex) => {
  const ms = nonNegativeInt(queryParam(ex.query, 'ms'), 0);
  if (ms === null || ms > 3_600_000) return sendError(ex, 400, 'ms must be an integer 0..3600000');
  afterDelay(ex, ms, (e) => sendJson(e.res, 200, { slept_ms: ms }));
};

interface ControlRoute {
  readonly methods: Readonly<Record<string, Handler>> | null;
  readonly any?: Handler;
  /** Counted in /_sim/stats like protocol requests (the fixtures are, the introspection is not). */
  readonly counted: boolean;
}

const ROUTES = new Map<string, ControlRoute>([
  ['/_sim/stats', { methods: { GET: stats }, counted: false }],
  ['/_sim/config', { methods: { GET: getConfig, POST: postConfig }, counted: false }],
  ['/_sim/reset', { methods: { POST: reset }, counted: false }],
  ['/_sim/upload', { methods: { POST: upload, PUT: upload }, counted: true }],
  ['/_sim/download', { methods: { GET: download }, counted: true }],
  ['/_sim/sleep', { methods: { GET: sleep, POST: sleep }, counted: true }],
]);

const ECHO: ControlRoute = { methods: null, any: echo, counted: true };

export function controlRoute(path: string): ControlRoute | undefined {
  const r = ROUTES.get(path);
  if (r !== undefined) return r;
  if (path === '/_sim/echo' || path.startsWith('/_sim/echo/')) return ECHO;
  return undefined;
}

export function runControl(sim: SimContext, ex: Exchange, route: ControlRoute | undefined): void {
  if (route === undefined) return sendError(ex, 404, `unknown simulator route '${ex.path}'`);
  const handler = route.any ?? route.methods?.[ex.req.method ?? 'GET'];
  if (handler === undefined) {
    send(ex.res, 405, 'application/json', JSON.stringify({ error: `method ${ex.req.method ?? ''} not allowed on ${ex.path}` }));
    return;
  }
  handler(sim, ex);
}
