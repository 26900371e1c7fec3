import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../../errors/index.js';
import { ViewCache } from '../http1/bytes.js';
import type { HeaderLines } from './header-lines.js';
import { ParseError, ResponseParser, type ResponseSink } from './response-parser.js';

/**
 * What an upstream connection calls back into: the proxy's per-request exchange. Modelled
 * on undici's dispatcher handler: named callbacks, `onResponseData` returns false to pause,
 * errors arrive once through `onResponseError` and never throw.
 */
export interface UpstreamHandler {
  /** `lines` are valid during this call only. */
  onResponseHead(status: number, lines: HeaderLines, contentLength: number): void;
  onResponseData(chunk: Buffer): boolean;
  onResponseEnd(): void;
  /**
   * `retryable`: a reused socket failed before any byte of the response: the request may be
   * sent again on a fresh one. `answered`: some of the response had arrived (a status line,
   * part of a head): the replica may have acted on it, so it is never sent again anywhere.
   */
  onResponseError(code: ErrorCode, detail: string, retryable: boolean, answered: boolean): void;
  /** The socket's write buffer drained: the client's upload may resume. */
  onRequestDrain(): void;
  /** Runs `fn` with the client's output corked, so one upstream read is one client write. */
  corked(fn: () => void): void;
}

export interface PoolLike {
  readonly host: string;
  readonly port: number;
  readonly idleMs: number;
  release(conn: BaseConnection): void;
  remove(conn: BaseConnection): void;
}

// A request head and a first body piece up to this size leave as one buffer in one write,
// cheaper than a corked writev of the two; larger bodies are not copied for it.
const COALESCE_MAX_BYTES = 16 * 1024;

// That one buffer is the thread's, not one per request: a write that completes at once
// (the usual case on loopback and in a LAN) leaves it free for the next request. A write
// that libuv finishes later, or that the Writable queues, keeps it (see writeAtOnce), and
// the next request starts a new one.
let coalesced = Buffer.allocUnsafeSlow(32 * 1024);
const coalescedViews = new ViewCache();

/** Buffer's native latin1 encoder, without Buffer#write's argument handling in front of it. */
interface Latin1Writer {
  latin1Write(text: string, offset: number, length: number): number;
}

/** The thread's coalescing buffer is now held by a pending write: the next request gets a new one. */
export function coalescedTaken(): void {
  coalesced = Buffer.allocUnsafeSlow(coalesced.length);
}

/** A first body piece of `bytes` is copied into one buffer with the head by send(), synchronously. */
export function coalescesWithHead(bytes: number): boolean {
  return bytes <= COALESCE_MAX_BYTES;
}

const enum ConnState {
  Connecting,
  Busy,
  Idle,
  Closed,
}

/**
 * One keep-alive TCP connection to a replica. Socket listeners and the parser are created
 * once per connection, not per request; a request only swaps `#handler`.
 *
 * Everything but moving bytes lives here: the parser, keep-alive reuse, backpressure, abort
 * and the error codes. A subclass per transport (see transport.ts) opens the socket, takes
 * its reads to onRead() and writes a whole piece at once; one of them is chosen per thread,
 * so every call site sees one class.
 */
export abstract class BaseConnection implements ResponseSink {
  readonly socket: Socket;
  readonly #pool: PoolLike;
  readonly #parser: ResponseParser;
  #state = ConnState.Connecting;
  #handler: UpstreamHandler | null = null;
  #pendingData: Buffer | null = null;
  #pendingBytes = 0;
  #requestDone = false;
  #responseDone = false;
  #paused = false;
  /** A byte of the current request's response has arrived. */
  #answered = false;
  /** Requests served before this one: an error on a reused socket is usually a stale keep-alive. */
  served = 0;
  /** Wall time since when the socket has been idle; 0 until the pool's sweep stamps it. */
  idleSince = 0;
  readonly #feedCorked: () => void;

  constructor(pool: PoolLike) {
    this.#pool = pool;
    this.#parser = new ResponseParser(this);
    this.#feedCorked = this.#feed.bind(this);
    const socket = this.open(pool);
    this.socket = socket;
    socket.on(this.connectEvent, () => {
      if (this.#state === ConnState.Connecting) this.#state = this.#handler ? ConnState.Busy : ConnState.Idle;
    });
    socket.on('drain', () => this.drained());
    socket.on('end', () => this.#onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(errorCodeFor(err, this.#state !== ConnState.Connecting), err.code ?? err.message));
    socket.on('close', () => this.fail('SLUICE_ERR_UPSTREAM_RESET', 'connection closed'));
  }

  /** The socket's event after which a request can go: until then a failure is a failed connect. */
  protected get connectEvent(): 'connect' | 'secureConnect' {
    return 'connect';
  }

  /**
   * Connects to `pool`'s replica, with every read of the socket going to onRead(). Runs
   * inside this constructor: the subclass's own fields are not initialised yet.
   */
  protected abstract open(pool: PoolLike): Socket;

  /**
   * Writes `data` (a string is latin1) in one piece; false means the socket buffer is full.
   * `shared`: data is the thread's coalescing buffer, which must be copied, or given up
   * with coalescedTaken(), before anything keeps it past this call.
   */
  protected abstract writeAtOnce(data: string | Buffer, shared: boolean): boolean;

  /** writeAtOnce through the socket's Writable, which may hold a buffer until the socket takes it: a shared one is copied. */
  protected writeThroughSocket(data: string | Buffer, shared: boolean): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(shared ? Buffer.from(data) : data);
  }

  get connecting(): boolean {
    return this.#state === ConnState.Connecting;
  }

  protected get closed(): boolean {
    return this.#state === ConnState.Closed;
  }

  /** Starts a request on this connection. `head` is the complete request head (latin1). */
  send(handler: UpstreamHandler, head: string, noResponseBody: boolean, firstBody: Uint8Array | null, requestDone: boolean): boolean {
    this.#handler = handler;
    if (this.#state !== ConnState.Connecting) this.#state = ConnState.Busy;
    this.#parser.reset(noResponseBody);
    this.#requestDone = requestDone;
    this.#responseDone = false;
    this.#answered = false;
    if (this.#paused) this.resume();
    if (firstBody === null) return this.writeAtOnce(head, false);
    if (coalescesWithHead(firstBody.length)) {
      const length = head.length + firstBody.length;
      if (length > coalesced.length) coalesced = Buffer.allocUnsafeSlow(Math.max(length, coalesced.length * 2));
      const out = coalesced;
      (out as unknown as Latin1Writer).latin1Write(head, 0, head.length);
      out.set(firstBody, head.length);
      return this.writeAtOnce(coalescedViews.of(out, 0, length), true);
    }
    this.socket.cork();
    this.socket.write(head, 'latin1');
    const ok = this.socket.write(firstBody);
    this.socket.uncork();
    return ok;
  }

  /** Writes a piece of the request body; false means the socket buffer is full. */
  write(chunk: Buffer | string): boolean {
    return this.socket.write(chunk);
  }

  requestEnded(): void {
    this.#requestDone = true;
    if (this.#responseDone) this.#finish();
  }

  pause(): void {
    if (!this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
  }

  resume(): void {
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  /** The exchange gave up (client gone, timeout): the in-flight response is discarded with the socket. */
  abort(): void {
    this.#handler = null;
    this.#close();
  }

  /** Called by the pool for idle sockets past their keep-alive time. */
  closeIdle(): void {
    this.#close();
  }

  // ResponseSink: the parser's callbacks, forwarded to the current handler.
  onHead(status: number, lines: HeaderLines, contentLength: number): void {
    this.#handler?.onResponseHead(status, lines, contentLength);
  }

  onBody(chunk: Buffer): void {
    const handler = this.#handler;
    if (handler !== null && !handler.onResponseData(chunk)) this.pause();
  }

  onComplete(): void {
    this.#responseDone = true;
    const handler = this.#handler;
    if (this.#requestDone) this.#finish();
    handler?.onResponseEnd();
  }

  /**
   * A read of `n` bytes at the start of `buf`, valid until this returns (the stream_handle
   * path reuses one buffer). False: stop reading (paused, or the connection closed).
   */
  protected onRead(n: number, buf: Buffer): boolean {
    const handler = this.#handler;
    if (handler === null) {
      // Bytes on an idle connection: the server broke the protocol; do not reuse it.
      this.#close();
      return false;
    }
    this.#answered = true;
    this.#pendingData = buf;
    this.#pendingBytes = n;
    handler.corked(this.#feedCorked);
    return !this.#paused;
  }

  /** The socket's buffered request bytes went out: the client's upload may resume. */
  protected drained(): void {
    this.#handler?.onRequestDrain();
  }

  #feed(): void {
    const data = this.#pendingData!;
    this.#pendingData = null;
    try {
      const leftover = this.#parser.execute(data, this.#pendingBytes);
      if (leftover > 0) this.#parser.keepAlive = false;
    } catch (err) {
      this.fail('SLUICE_ERR_UPSTREAM_PROTOCOL', err instanceof ParseError ? err.message : String(err));
    }
  }

  #onEnd(): void {
    if (this.#handler !== null && this.#parser.readsUntilClose) {
      this.#handler.corked(() => this.#parser.finishAtEof());
    }
    this.fail('SLUICE_ERR_UPSTREAM_RESET', 'upstream closed the connection');
  }

  /** Response and request are both complete: hand the socket back, or close it. */
  #finish(): void {
    this.#handler = null;
    this.served++;
    if (this.#parser.keepAlive && this.#state === ConnState.Busy) {
      this.#state = ConnState.Idle;
      this.idleSince = 0; // stamped by the pool's next sweep
      if (this.#paused) this.resume();
      this.#pool.release(this);
    } else {
      this.#close();
    }
  }

  protected fail(code: ErrorCode, detail: string): void {
    // Closed before it was connected (a TLS server that hung up in the handshake): nothing was sent.
    if (this.#state === ConnState.Connecting && code === 'SLUICE_ERR_UPSTREAM_RESET') code = 'SLUICE_ERR_UPSTREAM_CONNECT';
    const handler = this.#handler;
    this.#handler = null;
    this.#close();
    if (handler !== null && !this.#responseDone) {
      const answered = this.#answered;
      const retryable = !answered && this.served > 0 && code !== 'SLUICE_ERR_UPSTREAM_PROTOCOL';
      handler.onResponseError(code, detail, retryable, answered);
    }
  }

  #close(): void {
    if (this.#state === ConnState.Closed) return;
    this.#state = ConnState.Closed;
    this.socket.destroy();
    this.#pool.remove(this);
  }
}

/** Before the TCP handshake completed it is a connect failure; after, a reset (RST or EPIPE). */
function errorCodeFor(err: NodeJS.ErrnoException, connected: boolean): ErrorCode {
  if (connected) return 'SLUICE_ERR_UPSTREAM_RESET';
  if (err.code === 'ETIMEDOUT') return 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT';
  return 'SLUICE_ERR_UPSTREAM_CONNECT';
}
