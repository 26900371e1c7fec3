// Open-loop load at a fixed offered rate, for added-latency figures without coordinated
// omission: request i is due at t0 + i/rate whatever happened to request i-1, and its
// latency is counted from that due time, so a stall in the server shows up as latency of
// every request it delayed instead of silently lowering the send rate (as closed-loop
// tools like wrk do).
//
// Run as a child of the bench, pinned next to the upstream:
//   node dist-bench/open-loop.js --url http://127.0.0.1:29080/up-1/predict --rate 5000 --seconds 5
// It prints one JSON object on stdout. With --ai it sends the bench's AI request to the URL
// (POST, the chat body and the OpenAI SDK's headers: bench/lib/ai-request.ts) instead of a GET.
//
// Requests go over a fixed pool of keep-alive connections with a minimal HTTP/1.1 writer
// and parser (a GET or the AI request's POST; Content-Length or chunked responses): node:http's client would cost more
// CPU than the proxy under test spends on a request, on the core shared with the upstream.
// Node's timers fire at ~1 ms granularity: with setTimeout, requests would leave in batches
// up to a millisecond late, noise ten times larger than the overhead being measured. A
// ticker thread sleeps with Atomics.wait (sub-millisecond timeouts) until each due time and
// posts a message that wakes the event loop; what lateness remains is reported as
// send_lag, so it can be told apart from server latency.

import { connect, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { AI_BODY, AI_HEADERS } from './lib/ai-request.js';
import { percentile, round } from './lib/stats.js';

export interface OpenLoopOptions {
  readonly url: string;
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly connections: number;
  /** Send the bench's AI request (POST /v1/chat/completions' body and headers) rather than a GET. */
  readonly ai?: boolean;
}

export interface Distribution {
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export interface OpenLoopResult {
  readonly offered_rps: number;
  readonly achieved_rps: number;
  readonly measured: number;
  readonly errors: number;
  readonly unanswered: number;
  readonly non2xx: number;
  /** From the scheduled send time: the figure without coordinated omission. */
  readonly latency_us: Distribution;
  /** From the moment the request was actually written (after any wait for a free connection). */
  readonly service_us: Distribution;
  /** How late the generator's timer dispatched requests relative to their schedule (generator, not server). */
  readonly send_lag_us: Pick<Distribution, 'p50' | 'p99' | 'max'>;
  readonly max_queue: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const DRAIN_TIMEOUT_MS = 5000;

/** One keep-alive connection carrying one request at a time. */
class Conn {
  readonly socket: Socket;
  busy = false;
  connected = false;
  index = -1;
  sentAt = 0;
  #buf: Buffer | null = null;
  readonly #gen: OpenLoop;

  constructor(gen: OpenLoop, host: string, port: number) {
    this.#gen = gen;
    this.socket = connect({ host, port, noDelay: true });
    this.socket.on('connect', () => (this.connected = true));
    this.socket.on('data', (d: Buffer) => this.#onData(d));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => gen.onClose(this));
  }

  send(index: number, request: Buffer): void {
    this.busy = true;
    this.index = index;
    this.sentAt = performance.now();
    this.socket.write(request);
  }

  #onData(d: Buffer): void {
    const buf = this.#buf === null ? d : Buffer.concat([this.#buf, d]);
    const status = responseEnd(buf);
    if (status === 0) {
      this.#buf = buf;
      return;
    }
    this.#buf = null;
    this.busy = false;
    this.#gen.onResponse(this, status);
  }
}

/** 0 while the response is incomplete; its status code once buf holds all of it. */
function responseEnd(buf: Buffer): number {
  const headEnd = buf.indexOf(CRLF2);
  if (headEnd === -1) return 0;
  const head = buf.toString('latin1', 0, headEnd).toLowerCase();
  const status = Number(head.slice(9, 12));
  let pos = headEnd + 4;
  const cl = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (cl !== null) return buf.length >= pos + Number(cl[1]) ? status : 0;
  if (!/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) return status;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
    if (lineEnd === -1) return 0;
    const size = parseInt(buf.toString('latin1', pos, lineEnd), 16);
    if (size === 0) return buf.length >= lineEnd + 4 ? status : 0;
    pos = lineEnd + 2 + size + 2;
    if (pos > buf.length) return 0;
  }
}

class OpenLoop {
  readonly #o: OpenLoopOptions;
  readonly #host: string;
  readonly #port: number;
  readonly #request: Buffer;
  readonly #period: number;
  readonly #total: number;
  readonly #warmupCount: number;
  readonly #latency: Float64Array;
  readonly #service: Float64Array;
  readonly #lag: Float64Array;
  readonly #done: Uint8Array;
  #t0 = 0;
  #next = 0;
  #completed = 0;
  #errors = 0;
  #non2xx = 0;
  readonly #idle: Conn[] = [];
  readonly #queue: number[] = [];
  #queueHead = 0;
  #maxQueue = 0;
  #finish: (() => void) | null = null;

  constructor(o: OpenLoopOptions) {
    this.#o = o;
    const u = new URL(o.url);
    this.#host = u.hostname;
    this.#port = Number(u.port || 80);
    this.#request = o.ai === true ? aiRequest(u) : Buffer.from(`GET ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\n\r\n`, 'latin1');
    this.#period = 1000 / o.rate;
    this.#warmupCount = Math.round(o.rate * o.warmupSeconds);
    this.#total = this.#warmupCount + Math.round(o.rate * o.seconds);
    this.#latency = new Float64Array(this.#total);
    this.#service = new Float64Array(this.#total);
    this.#lag = new Float64Array(this.#total);
    this.#done = new Uint8Array(this.#total);
  }

  async run(): Promise<OpenLoopResult> {
    await Promise.all(Array.from({ length: this.#o.connections }, () => new Promise<void>((resolve, reject) => {
      const c = new Conn(this, this.#host, this.#port);
      c.socket.once('connect', () => {
        this.#idle.push(c);
        resolve();
      });
      c.socket.once('error', reject);
    })));
    this.#t0 = performance.now() + 20;
    const finished = new Promise<void>((resolve) => (this.#finish = resolve));
    const ticker = startTicker(performance.timeOrigin + this.#t0, this.#period, this.#total);
    ticker.on('message', this.#tick);
    await finished;
    await ticker.terminate();
    const drainUntil = performance.now() + DRAIN_TIMEOUT_MS;
    while (this.#completed + this.#errors < this.#total && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.#idle) c.socket.destroy();
    return this.#result();
  }

  #tick = (): void => {
    const now = performance.now();
    while (this.#next < this.#total && this.#t0 + this.#next * this.#period <= now) this.#dispatch(this.#next++);
    if (this.#next === this.#total) this.#finish!();
  };

  #dispatch(i: number): void {
    this.#lag[i] = (performance.now() - (this.#t0 + i * this.#period)) * 1000;
    const c = this.#idle.pop();
    if (c !== undefined) {
      this.#send(c, i);
      return;
    }
    this.#queue.push(i);
    const depth = this.#queue.length - this.#queueHead;
    if (depth > this.#maxQueue) this.#maxQueue = depth;
  }

  #send(c: Conn, i: number): void {
    c.send(i, this.#request);
  }

  onResponse(c: Conn, status: number): void {
    const now = performance.now();
    const i = c.index;
    this.#latency[i] = (now - (this.#t0 + i * this.#period)) * 1000;
    this.#service[i] = (now - c.sentAt) * 1000;
    this.#done[i] = 1;
    this.#completed++;
    if (status >= 400) this.#non2xx++;
    if (this.#queueHead < this.#queue.length) {
      this.#send(c, this.#queue[this.#queueHead++]!);
      if (this.#queueHead === this.#queue.length) {
        this.#queue.length = 0;
        this.#queueHead = 0;
      }
    } else {
      this.#idle.push(c);
    }
  }

  /** A connection died: its request is an error and a fresh connection takes its place. */
  onClose(c: Conn): void {
    if (c.busy) {
      this.#errors++;
      c.busy = false;
    }
    const i = this.#idle.indexOf(c);
    if (i !== -1) this.#idle.splice(i, 1);
    // Only a connection that had worked is replaced: a refused one would loop.
    if (c.connected && this.#next < this.#total) {
      const fresh = new Conn(this, this.#host, this.#port);
      fresh.socket.once('connect', () => this.#onReconnect(fresh));
    }
  }

  /** A replacement connection is up: it serves the queue or joins the idle pool. */
  #onReconnect(c: Conn): void {
    if (this.#queueHead < this.#queue.length) this.#send(c, this.#queue[this.#queueHead++]!);
    else this.#idle.push(c);
  }

  #result(): OpenLoopResult {
    const lat: number[] = [];
    const svc: number[] = [];
    const lag: number[] = [];
    for (let i = this.#warmupCount; i < this.#total; i++) {
      lag.push(this.#lag[i]!);
      if (this.#done[i] === 1) {
        lat.push(this.#latency[i]!);
        svc.push(this.#service[i]!);
      }
    }
    const measured = lat.length;
    return {
      offered_rps: this.#o.rate,
      achieved_rps: round(measured / this.#o.seconds),
      measured,
      errors: this.#errors,
      unanswered: this.#total - this.#completed - this.#errors,
      non2xx: this.#non2xx,
      latency_us: distribution(lat),
      service_us: distribution(svc),
      send_lag_us: (({ p50, p99, max }) => ({ p50, p99, max }))(distribution(lag)),
      max_queue: this.#maxQueue,
    };
  }
}

// The ticker: absolute times (timeOrigin + now) because each thread has its own origin.
// It wakes at every due time; when it falls behind it posts at once, never skipping.
const TICKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { start, period, total } = workerData;
const cell = new Int32Array(new SharedArrayBuffer(4));
for (let i = 0; i < total; i++) {
  const wait = start + i * period - (performance.timeOrigin + performance.now());
  if (wait > 0.02) Atomics.wait(cell, 0, 0, wait);
  parentPort.postMessage(i);
}
`;

/** The AI request's bytes, for the path of `u`. */
function aiRequest(u: URL): Buffer {
  const body = Buffer.from(AI_BODY);
  const headers = Object.entries(AI_HEADERS).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const head = `POST ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n${headers}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

function startTicker(start: number, period: number, total: number): Worker {
  return new Worker(TICKER, { eval: true, workerData: { start, period, total } });
}

function distribution(xs: number[]): Distribution {
  xs.sort((a, b) => a - b);
  const mean = xs.reduce((a, x) => a + x, 0) / (xs.length || 1);
  return {
    mean: round(mean, 1),
    p50: round(percentile(xs, 50), 1),
    p90: round(percentile(xs, 90), 1),
    p99: round(percentile(xs, 99), 1),
    p999: round(percentile(xs, 99.9), 1),
    max: round(xs[xs.length - 1] ?? NaN, 1),
  };
}

export function openLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  return new OpenLoop(o).run();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: '5000' },
      seconds: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '64' },
      ai: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.url === undefined) throw new Error('--url is required');
  const result = await openLoop({
    url: values.url,
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    warmupSeconds: Number(values.warmup),
    connections: Number(values.connections),
    ai: values.ai,
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`open-loop: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
