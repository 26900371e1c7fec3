// A small HTTP client for tests that need what fetch hides: raw chunk timing, exact
// headers, aborting mid-stream, keep-alive control.

import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  /** Header names and values exactly as received, in order. */
  rawHeaders: string[];
  body: string;
  /** Arrival time (ms since request start) and text of each body chunk. */
  chunks: Array<{ at: number; text: string }>;
  /** Date.now() when the request was aborted by `abortWhen`, else null. */
  abortedAt: number | null;
  /** True when the response body ended properly (not cut by a closed connection). */
  complete: boolean;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Abort the request once this predicate over the body so far is true. */
  abortWhen?: (bodySoFar: string) => boolean;
  /** Called after each body chunk with the body so far (e.g. to start another request mid-stream). */
  onBody?: (bodySoFar: string) => void;
  timeoutMs?: number;
  /** Source address of the connection (any 127.x.y.z works on Linux loopback). */
  localAddress?: string;
  /** An https: URL's trusted certificates (a test's self-signed one). */
  ca?: string | Buffer;
}

export function httpRequest(url: string, opts: RequestOptions = {}): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const send = url.startsWith('https:') ? httpsRequest : request;
    const req = send(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false, localAddress: opts.localAddress, ca: opts.ca }, (res: IncomingMessage) => {
      const chunks: Reply['chunks'] = [];
      let body = '';
      let aborted = false;
      const reply = (abortedAt: number | null): Reply => ({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body, chunks, abortedAt, complete: res.complete });
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        if (aborted) return;
        chunks.push({ at: performance.now() - started, text });
        body += text;
        opts.onBody?.(body);
        if (opts.abortWhen?.(body)) {
          aborted = true;
          req.destroy();
          resolve(reply(Date.now()));
        }
      });
      res.on('end', () => resolve(reply(null)));
      // A response cut by the server (e.g. a stream that failed mid-way) resolves with
      // what arrived; the test checks whether that is what it expected.
      res.on('error', () => resolve(reply(null)));
      res.on('close', () => resolve(reply(null)));
    });
    req.on('error', reject);
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error('test request timed out')));
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

export function json<T = Record<string, unknown>>(r: Reply): T {
  return JSON.parse(r.body) as T;
}

/** No sample of the series a test asked for: it vanished (renamed, a label dropped) or was never there. */
export class MissingMetricError extends Error {
  override readonly name = 'MissingMetricError';
}

export interface MetricOptions {
  /**
   * The value to read when no sample matches, instead of throwing. Only for a "before"
   * snapshot of a labelled counter that appears on its first increment (e.g.
   * `sluice_upstream_errors_total{code=...}`); the "after" read must find it.
   */
  absent?: number;
}

/**
 * The value of one Prometheus sample, e.g. `metric(text, 'sluice_requests_total', {code: '200'})`;
 * summed over other labels. Throws MissingMetricError when no sample matches, so that an
 * assertion such as `=== 0` cannot pass because the series is gone.
 */
export function metric(text: string, name: string, labels: Record<string, string> = {}, opts: MetricOptions = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[4]);
      found = true;
    }
  }
  if (found) return sum;
  if (opts.absent !== undefined) return opts.absent;
  throw new MissingMetricError(`no sample of ${name}${JSON.stringify(labels)} in the metrics`);
}

export interface RawReply {
  status: number;
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection after (or instead of) answering. */
  closed: boolean;
  raw: string;
}

/** Status and headers of a raw response head (lower-cased names; repeats joined with ', '). */
function parseHead(head: string): { status: number; headers: Record<string, string> } {
  const lines = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    const k = l.slice(0, c).trim().toLowerCase();
    const v = l.slice(c + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  return { status: Number(lines[0]!.split(' ')[1]), headers };
}

/**
 * Sends raw bytes (what a well-behaved client library would refuse to send) and reads one
 * response: until its content-length is complete, the connection closes, or `timeoutMs`.
 * `body` is written after the head, in pieces, as long as the server keeps reading.
 */
/** A connection to 127.0.0.1:`port`, over TLS when `tls` (trusting any certificate: a test's own; what is written before the handshake ends waits for it). */
export function connect(port: number, tls = false): Socket {
  return tls ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : netConnect({ host: '127.0.0.1', port });
}

export function rawRequest(port: number, head: string, opts: { body?: Buffer[]; timeoutMs?: number; tls?: boolean } = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, opts.tls);
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = buf.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) {
        reject(new Error(`no complete response head (closed=${closed}): ${JSON.stringify(text)}`));
        return;
      }
      const { status, headers } = parseHead(text.slice(0, end));
      resolve({ status, headers, body: text.slice(end + 4), closed, raw: text });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5_000);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const text = buf.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return;
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end + 2));
      if (m !== null && buf.length - (end + 4) >= Number(m[1])) {
        // Complete; give the server a moment to close, to observe `closed`.
        setTimeout(() => finish(socket.readableEnded || socket.destroyed), 100);
      }
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => {
      socket.write(head, 'latin1');
      const pieces = opts.body ?? [];
      let i = 0;
      const writeMore = (): void => {
        while (i < pieces.length && !done) {
          if (!socket.write(pieces[i++]!)) {
            socket.once('drain', writeMore);
            return;
          }
        }
      };
      writeMore();
    });
  });
}

/**
 * One client connection that sends requests one after another and reads exactly one
 * response per request (HEAD, 204 and 304 have no body; otherwise Content-Length), so a
 * test can check that the connection stays usable (keep-alive) after each response.
 */
export class RawConnection {
  readonly #socket: Socket;
  #buf = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | null = null;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    const onClose = (): void => {
      this.#closed = true;
      this.#wake?.();
    };
    socket.on('close', onClose);
    socket.on('error', onClose);
  }

  static open(port: number, tls = false): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = connect(port, tls);
      s.once('connect', () => resolve(new RawConnection(s)));
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends `head` (and body); resolves with the response, or null if the connection closed first. */
  async request(head: string, opts: { bodyless?: boolean; timeoutMs?: number } = {}): Promise<RawReply | null> {
    if (!this.#closed) this.#socket.write(head, 'latin1');
    const deadline = Date.now() + (opts.timeoutMs ?? 5_000);
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end !== -1) {
        const { status, headers } = parseHead(this.#buf.toString('latin1', 0, end));
        const noBody = opts.bodyless === true || status === 204 || status === 304 || (status >= 100 && status < 200);
        const length = noBody ? 0 : Number(headers['content-length'] ?? NaN);
        if (!Number.isNaN(length) && this.#buf.length >= end + 4 + length) {
          const body = this.#buf.toString('latin1', end + 4, end + 4 + length);
          const raw = this.#buf.toString('latin1', 0, end + 4 + length);
          this.#buf = this.#buf.subarray(end + 4 + length);
          return { status, headers, body, closed: false, raw };
        }
      }
      if (this.#closed) return null;
      if (Date.now() > deadline) throw new Error(`no complete response within the timeout: ${JSON.stringify(this.#buf.toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** Bytes received beyond the responses read so far (should be none). */
  get unread(): string {
    return this.#buf.toString('latin1');
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** A plain TCP connection to a gateway port, for bytes written by hand: what came back, and when the gateway closed it. */
export interface WatchedConnection { socket: Socket; got: () => string; closedAt: () => number | null }

export async function openWatched(port: number): Promise<WatchedConnection> {
  const socket = netConnect({ host: '127.0.0.1', port });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let got = '';
  let closedAt: number | null = null;
  socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
  socket.on('error', () => {});
  socket.on('close', () => { closedAt = performance.now(); });
  return { socket, got: () => got, closedAt: () => closedAt };
}
