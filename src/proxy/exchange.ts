// One client request and its upstream request: the bridge between a uWS HttpResponse and
// an UpstreamConnection. It streams both bodies through with backpressure both ways and
// aborts the upstream the moment the client goes away.

import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, type ErrorCode } from '../errors/index.js';
import type { DeploymentRoute, ReplicaRoute } from './route-table.js';
import type { UpstreamConnection, UpstreamHandler, PoolWaiter } from './upstream/index.js';
import { connectionTokens, isDroppedResponseHeader } from './headers.js';
import { endWithoutBody, statusLine, writeErrorResponse } from './respond.js';
import type { Gateway } from './gateway.js';

/** What the timeout sweep checks; see Gateway.sweep(). */
export const enum Phase {
  /** Waiting for a pooled connection or for TCP connect. */
  Connecting,
  /** Client still uploading: no upstream timer runs. */
  Uploading,
  /** Request sent; waiting for the response head. */
  AwaitingHead,
  /** Response streaming; idle timer runs between chunks. */
  Streaming,
  Done,
}

const enum BodyMode {
  None,
  Length,
  Chunked,
}

const enum StreamKind {
  Other,
  Sse,
  Ndjson,
}

// Scratch for the one corked write made from an upstream callback: a module-level function
// instead of a closure per chunk.
let corkedExchange: Exchange;
let corkedFn: () => void;
function runCorked(): void {
  corkedFn.call(corkedExchange);
}

const CHUNK_TERMINATOR = '\r\n';
const LAST_CHUNK = '0\r\n\r\n';

export class Exchange implements UpstreamHandler, PoolWaiter {
  readonly res: HttpResponse;
  readonly gateway: Gateway;
  readonly requestId: string;
  readonly method: string;
  readonly route: DeploymentRoute;
  readonly replica: ReplicaRoute;
  readonly startedAt: number;
  /** Index in the gateway's active list (swap-remove); -1 when not listed. */
  activeIndex = -1;
  phase = Phase.Connecting;
  phaseSince: number;

  #head: string;
  #conn: UpstreamConnection | null = null;
  #noResponseBody: boolean;
  // Request body
  readonly #expectBody: boolean;
  readonly #chunkedUpload: boolean;
  #bodyBytes = 0;
  #bodyDone: boolean;
  #heldBody: Buffer[] | null = null;
  #clientPaused = false;
  // Response
  status = 0;
  #responded = false;
  #finished = false;
  #mode = BodyMode.None;
  #kind = StreamKind.Other;
  #total = 0;
  #pending: Buffer[] | null = null;
  #pendingOffset = 0;
  #writableHooked = false;
  #upstreamEnded = false;
  #retries = 0;
  errorCode: ErrorCode | null = null;

  constructor(
    gateway: Gateway,
    res: HttpResponse,
    requestId: string,
    method: string,
    route: DeploymentRoute,
    replica: ReplicaRoute,
    head: string,
    expectBody: boolean,
    chunkedUpload: boolean,
  ) {
    this.gateway = gateway;
    this.res = res;
    this.requestId = requestId;
    this.method = method;
    this.route = route;
    this.replica = replica;
    this.#head = head;
    this.#noResponseBody = method === 'HEAD';
    this.#expectBody = expectBody;
    this.#chunkedUpload = chunkedUpload;
    this.#bodyDone = !expectBody;
    this.startedAt = performance.now();
    this.phaseSince = this.startedAt;
  }

  /** Takes a connection from the pool (or queues) and sends the request head. */
  start(): void {
    const conn = this.replica.pool.acquire(this);
    if (conn !== null) this.#send(conn);
    else if (this.#expectBody) this.#pauseClient();
  }

  // PoolWaiter
  onConnection(conn: UpstreamConnection): boolean {
    if (this.#finished) return false;
    this.#send(conn);
    if (this.#clientPaused && !this.#bodyDone) this.#resumeClient();
    return true;
  }

  #send(conn: UpstreamConnection): void {
    this.#conn = conn;
    let first: Buffer | null = null;
    if (this.#heldBody !== null) {
      first = this.#heldBody.length === 1 ? this.#heldBody[0]! : Buffer.concat(this.#heldBody);
      this.#heldBody = null;
      if (this.#chunkedUpload) first = chunkFrame(first, this.#bodyDone);
    } else if (this.#chunkedUpload && this.#bodyDone) {
      first = Buffer.from(LAST_CHUNK);
    }
    this.#setPhase(this.#bodyDone ? (conn.connecting ? Phase.Connecting : Phase.AwaitingHead) : Phase.Uploading);
    const ok = conn.send(this, this.#head, this.#noResponseBody, first, this.#bodyDone);
    if (!ok && !this.#bodyDone) this.#pauseClient();
  }

  /** A piece of the client's request body (uWS onData; the ArrayBuffer dies on return). */
  onClientData(ab: ArrayBuffer, isLast: boolean): void {
    if (this.#finished) return;
    const n = ab.byteLength;
    this.#bodyBytes += n;
    if (this.#bodyBytes > this.route.maxBodyBytes) {
      this.#fail('SLUICE_ERR_BODY_TOO_LARGE', `request body exceeds ${this.route.maxBodyBytes} bytes`, true);
      return;
    }
    let chunk: Buffer | null = null;
    if (n > 0) {
      chunk = Buffer.allocUnsafe(n);
      chunk.set(new Uint8Array(ab));
    }
    if (isLast) this.#bodyDone = true;
    const conn = this.#conn;
    if (conn === null) {
      if (chunk !== null) (this.#heldBody ??= []).push(chunk);
      return;
    }
    let ok = true;
    if (this.#chunkedUpload) {
      if (chunk !== null || isLast) ok = conn.write(chunkFrame(chunk, isLast));
    } else if (chunk !== null) {
      ok = conn.write(chunk);
    }
    if (isLast) {
      conn.requestEnded();
      this.#setPhase(Phase.AwaitingHead);
    } else if (!ok) {
      this.#pauseClient();
    }
  }

  onRequestDrain(): void {
    if (this.#clientPaused && !this.#finished) this.#resumeClient();
    if (this.phase === Phase.Connecting && this.#bodyDone) this.#setPhase(Phase.AwaitingHead);
  }

  #pauseClient(): void {
    if (!this.#clientPaused) {
      this.#clientPaused = true;
      this.res.pause();
    }
  }

  #resumeClient(): void {
    this.#clientPaused = false;
    this.res.resume();
  }

  corked(fn: () => void): void {
    if (this.#finished) {
      fn();
      return;
    }
    corkedExchange = this as Exchange;
    corkedFn = fn as () => void;
    this.res.cork(runCorked);
  }

  onResponseHead(status: number, headers: string[], contentLength: number): void {
    if (this.#finished) return;
    const res = this.res;
    this.status = status;
    this.#responded = true;
    this.#setPhase(Phase.Streaming);
    this.route.stats.recordTtfb((this.phaseSince - this.startedAt) / 1000);
    res.writeStatus(statusLine(status));
    // Headers the upstream named in its Connection header are hop-by-hop too (RFC 9110
    // 7.6.1). Rare, so only a length check per header unless one is present.
    let hop: string[] | null = null;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      // 'c' or 'C' first, so that Set-Cookie (also 10 long) is not lower-cased for nothing.
      if (name.length === 10 && (name.charCodeAt(0) | 0x20) === 0x63 && name.toLowerCase() === 'connection') {
        const tokens = connectionTokens(headers[i + 1]!);
        if (tokens !== null) hop = hop === null ? tokens : hop.concat(tokens);
      }
    }
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      if (isDroppedResponseHeader(name)) continue;
      if (hop !== null && hop.includes(name.toLowerCase())) continue;
      const value = headers[i + 1]!;
      if (name.length === 12 && this.#kind === StreamKind.Other && name.toLowerCase() === 'content-type') this.#kind = streamKindOf(value);
      res.writeHeader(name, value);
    }
    res.writeHeader('x-request-id', this.requestId);
    if (this.#noResponseBody || status === 204 || status === 304) {
      this.#mode = BodyMode.None;
      // HEAD and 304 may announce the representation's length; a 204 never has one (RFC 9110 8.6).
      this.#total = status === 204 ? -1 : contentLength;
    } else if (contentLength >= 0) {
      this.#mode = BodyMode.Length;
      this.#total = contentLength;
    } else {
      this.#mode = BodyMode.Chunked;
    }
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.#finished) return true;
    this.phaseSince = performance.now();
    this.route.stats.bytesOut += chunk.length;
    if (this.#mode === BodyMode.Chunked) {
      if (this.res.write(chunk)) return true;
      this.#hookWritable();
      return false;
    }
    if (this.#pending !== null) {
      this.#pending.push(chunk);
      return false;
    }
    const offset = this.res.getWriteOffset();
    const [ok, done] = this.res.tryEnd(chunk, this.#total);
    if (done) {
      this.#clientComplete();
      return true;
    }
    if (ok) return true;
    this.#pending = [chunk];
    this.#pendingOffset = offset;
    this.#hookWritable();
    return false;
  }

  #hookWritable(): void {
    if (!this.#writableHooked) {
      this.#writableHooked = true;
      this.res.onWritable((offset) => this.#onWritable(offset));
    }
  }

  #onWritable(offset: number): boolean {
    if (this.#finished) return true;
    // A slow client is not a stalled upstream: the idle timer restarts when the client drains.
    this.phaseSince = performance.now();
    const pending = this.#pending;
    if (pending !== null) {
      // Length mode: retry what tryEnd could not take, from where the socket stopped.
      while (pending.length > 0) {
        const chunk = pending[0]!;
        const [ok, done] = this.res.tryEnd(chunk.subarray(offset - this.#pendingOffset), this.#total);
        if (done) {
          this.#clientComplete();
          return true;
        }
        if (!ok) return false;
        pending.shift();
        offset = this.#pendingOffset = this.res.getWriteOffset();
      }
      this.#pending = null;
    }
    if (this.#upstreamEnded) {
      this.#endClient();
      return true;
    }
    this.#conn?.resume();
    return true;
  }

  onResponseEnd(): void {
    this.#upstreamEnded = true;
    const conn = this.#conn;
    this.#conn = null;
    // The upstream answered before the upload ended: that socket cannot be reused.
    if (!this.#bodyDone) conn?.abort();
    if (this.#finished) return;
    // Length mode with data still queued for a slow client: #onWritable ends it.
    if (this.#pending === null) this.#endClient();
  }

  #endClient(): void {
    const res = this.res;
    switch (this.#mode) {
      case BodyMode.None:
        endWithoutBody(res, this.#total);
        break;
      case BodyMode.Length:
        // Only reached for a 0-length body or when the upstream ended short of its length.
        if (this.#total === 0) res.end();
        else res.close();
        break;
      case BodyMode.Chunked:
        res.end();
        break;
    }
    this.#clientComplete();
  }

  #clientComplete(): void {
    if (!this.#finished) this.#finish(this.status);
  }

  onResponseError(code: ErrorCode, detail: string, retryable: boolean): void {
    this.#conn = null;
    if (this.#finished) return;
    // A reused keep-alive socket the server had just closed: send again on a fresh one,
    // but only when no byte of the request body was lost with it.
    if (retryable && this.#retries < 2 && this.#heldBody === null && this.#bodyBytes === 0 && this.#bodyDone) {
      this.#retries++;
      const conn = this.replica.pool.acquire(this);
      if (conn !== null) this.#send(conn);
      return;
    }
    this.route.stats.upstreamError(code);
    this.#fail(code, detail, false);
  }

  /** The client went away (uWS onAborted): stop the upstream generation at once. */
  onClientAborted(): void {
    if (this.#finished) return;
    this.route.stats.clientAborts++;
    this.#abortUpstream();
    this.#finish(499);
  }

  /** Called by the gateway's timeout sweep. */
  timeout(code: ErrorCode): void {
    if (this.#finished) return;
    this.route.stats.upstreamError(code);
    this.#abortUpstream();
    this.corked(() => this.#fail(code, ERRORS[code].message, false));
  }

  #abortUpstream(): void {
    const conn = this.#conn;
    this.#conn = null;
    conn?.abort();
  }

  /**
   * Ends the exchange with a gateway error: a JSON error if the client has seen nothing yet;
   * after the response has started, a clean end with an error event for SSE / NDJSON
   * streams, or a cut connection so the client cannot mistake a truncated body for a whole.
   */
  #fail(code: ErrorCode, message: string, closeClient: boolean): void {
    this.#abortUpstream();
    this.errorCode = code;
    const res = this.res;
    if (!this.#responded) {
      const status = ERRORS[code].status;
      writeErrorResponse(res, status, code, message, this.requestId, closeClient, undefined, this.#noResponseBody);
      this.#finish(status);
      return;
    }
    const body = `{"error":{"code":"${code}","message":${JSON.stringify(message)},"request_id":${JSON.stringify(this.requestId)}}}`;
    const mode = this.#mode;
    const kind = this.#kind;
    // Errors also arrive from socket events, outside any uWS callback: cork the writes.
    res.cork(() => {
      if (mode === BodyMode.Chunked && kind === StreamKind.Sse) {
        res.write(`event: error\ndata: ${body}\n\n`);
        res.end();
      } else if (mode === BodyMode.Chunked && kind === StreamKind.Ndjson) {
        res.write(`${body}\n`);
        res.end();
      } else {
        res.close();
      }
    });
    this.#finish(this.status);
  }

  #setPhase(phase: Phase): void {
    this.phase = phase;
    this.phaseSince = performance.now();
  }

  #finish(status: number): void {
    this.#finished = true;
    this.phase = Phase.Done;
    this.status = status;
    this.#pending = null;
    this.gateway.onExchangeDone(this);
  }

  /** Waiting for a pooled connection or for TCP connect: the connect timeout applies. */
  get upstreamConnecting(): boolean {
    return this.#conn === null ? !this.#upstreamEnded : this.#conn.connecting;
  }

  get bodyBytes(): number {
    return this.#bodyBytes;
  }
}

function streamKindOf(contentType: string): StreamKind {
  const ct = contentType.toLowerCase();
  if (ct.startsWith('text/event-stream')) return StreamKind.Sse;
  if (ct.startsWith('application/x-ndjson') || ct.startsWith('application/ndjson') || ct.startsWith('application/jsonl')) return StreamKind.Ndjson;
  return StreamKind.Other;
}

/** Re-frames a piece of a chunked client upload for the upstream. */
function chunkFrame(chunk: Buffer | null, last: boolean): Buffer {
  const parts: Buffer[] = [];
  if (chunk !== null && chunk.length > 0) {
    parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, Buffer.from(CHUNK_TERMINATOR, 'latin1'));
  }
  if (last) parts.push(Buffer.from(LAST_CHUNK, 'latin1'));
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
