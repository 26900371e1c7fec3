import { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import type { ErrorCode } from '../../errors/index.js';
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
  /** `retryable`: nothing of the response arrived and the request may be sent again. */
  onResponseError(code: ErrorCode, detail: string, retryable: boolean): void;
  /** The socket's write buffer drained: the client's upload may resume. */
  onRequestDrain(): void;
  /** Runs `fn` with the client's output corked, so one upstream read is one client write. */
  corked(fn: () => void): void;
}

export interface PoolLike {
  readonly host: string;
  readonly port: number;
  readonly idleMs: number;
  release(conn: UpstreamConnection): void;
  remove(conn: UpstreamConnection): void;
}

// One read buffer for every upstream socket of this thread (Node's `onread`): a read is
// parsed and handed to the client synchronously, so nothing outlives the callback except
// what the exchange copies (backpressured chunks, cache recordings). This skips the
// Readable stream machinery and the allocation of a buffer per read.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
// A request head and a first body piece up to this size leave as one buffer in one write,
// cheaper than a corked writev of the two; larger bodies are not copied for it.
const COALESCE_MAX_BYTES = 16 * 1024;

/** A first body piece of `bytes` is copied into one buffer with the head by send(), synchronously. */
export function coalescesWithHead(bytes: number): boolean {
  return bytes <= COALESCE_MAX_BYTES;
}

/** The libuv stream under a net.Socket, as Node's own stream_base_commons drives it. */
interface StreamHandle {
  writeLatin1String(req: object, data: string): number;
  writeBuffer(req: object, data: Uint8Array): number;
  /** Called by the native stream for every read; `streamBaseState` holds the byte count. */
  onread: (arrayBuffer: ArrayBuffer) => unknown;
  reading: boolean;
  readStop(): number;
}

interface WriteReq {
  oncomplete: (status: number) => void;
}

// Node's Writable costs about 0.7 µs of JS per write (writeOrBuffer, a WriteWrap, a
// nextTick for the callback), which is a visible share of a small request. A socket with
// nothing queued can hand the bytes to its handle directly, through the same StreamBase
// call net.Socket makes. `process.binding('stream_wrap')` is how that call is reached; if
// a Node version stops offering it, every write takes the ordinary path.
// Reads take the same shortcut (see #takeReads).
const streamWrap = loadStreamWrap();

function loadStreamWrap(): { state: Int32Array; lastWriteWasAsync: number; readBytes: number; newReq: () => WriteReq } | null {
  try {
    const b = (process as unknown as { binding(name: string): Record<string, unknown> }).binding('stream_wrap');
    const WriteWrap = b['WriteWrap'] as (new () => WriteReq) | undefined;
    const state = b['streamBaseState'];
    const index = b['kLastWriteWasAsync'];
    const readBytes = b['kReadBytesOrError'];
    if (typeof WriteWrap !== 'function' || !(state instanceof Int32Array) || typeof index !== 'number' || typeof readBytes !== 'number') return null;
    return { state, lastWriteWasAsync: index, readBytes, newReq: () => new WriteWrap() };
  } catch {
    return null;
  }
}

function handleOf(socket: Socket): StreamHandle | null {
  return (socket as unknown as { _handle: StreamHandle | null })._handle;
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
 */
export class UpstreamConnection implements ResponseSink {
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
  /** Requests served before this one: an error on a reused socket is usually a stale keep-alive. */
  served = 0;
  /** Wall time since when the socket has been idle; 0 until the pool's sweep stamps it. */
  idleSince = 0;
  readonly #feedCorked: () => void;
  /**
   * The request object for direct writes: reused while writes complete synchronously (the
   * usual case), replaced when one is left in flight, whose completion reports the drain.
   */
  #writeReq: WriteReq | null = null;

  constructor(pool: PoolLike) {
    this.#pool = pool;
    this.#parser = new ResponseParser(this);
    this.#feedCorked = this.#feed.bind(this);
    const socket = connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.#onRead(n, buf as Buffer) },
    });
    this.socket = socket;
    this.#takeReads(socket);
    socket.on('connect', () => {
      if (this.#state === ConnState.Connecting) this.#state = this.#handler ? ConnState.Busy : ConnState.Idle;
    });
    socket.on('drain', () => this.#handler?.onRequestDrain());
    socket.on('end', () => this.#onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => this.#fail(errorCodeFor(err, this.#state !== ConnState.Connecting), err.code ?? err.message));
    socket.on('close', () => this.#fail('SLUICE_ERR_UPSTREAM_RESET', 'connection closed'));
  }

  /**
   * Data reads go straight from the handle to #onRead. Node's onStreamRead, which would
   * run them, costs about 0.2 µs of property lookups on the socket per read (its timer,
   * destroyed, the onread option) for nothing this connection uses; it still runs the
   * rest: end of stream and read errors.
   */
  #takeReads(socket: Socket): void {
    const handle = handleOf(socket);
    if (streamWrap === null || handle === null || typeof handle.onread !== 'function') return;
    const state = streamWrap.state;
    const readBytes = streamWrap.readBytes;
    const nodeOnRead = handle.onread;
    handle.onread = (arrayBuffer: ArrayBuffer): unknown => {
      const n = state[readBytes]!;
      if (n <= 0) return nodeOnRead.call(handle, arrayBuffer);
      if (this.#state === ConnState.Closed) return undefined;
      // #onRead may have closed the connection (a protocol error, the response cut short).
      if (!this.#onRead(n, READ_BUFFER) && (this.#state as ConnState) !== ConnState.Closed) {
        // What Node does when a stream's onread callback returns false.
        handle.reading = false;
        handle.readStop();
      }
      return undefined;
    };
  }

  get connecting(): boolean {
    return this.#state === ConnState.Connecting;
  }

  /** Starts a request on this connection. `head` is the complete request head (latin1). */
  send(handler: UpstreamHandler, head: string, noResponseBody: boolean, firstBody: Uint8Array | null, requestDone: boolean): boolean {
    this.#handler = handler;
    if (this.#state !== ConnState.Connecting) this.#state = ConnState.Busy;
    this.#parser.reset(noResponseBody);
    this.#requestDone = requestDone;
    this.#responseDone = false;
    if (this.#paused) this.resume();
    if (firstBody === null) return this.#write(head);
    if (coalescesWithHead(firstBody.length)) {
      const out = Buffer.allocUnsafe(head.length + firstBody.length);
      out.write(head, 0, 'latin1');
      out.set(firstBody, head.length);
      return this.#write(out);
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

  /** `data` (a string is latin1) straight to the handle when nothing is queued, else through the Writable. */
  #write(data: string | Buffer): boolean {
    const socket = this.socket;
    const handle = handleOf(socket);
    if (streamWrap === null || handle === null || socket.connecting || socket.writableLength !== 0 || this.#state === ConnState.Closed) {
      return typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data);
    }
    const req = (this.#writeReq ??= this.#newWriteReq());
    const err = typeof data === 'string' ? handle.writeLatin1String(req, data) : handle.writeBuffer(req, data);
    if (err !== 0) {
      // EPIPE, ECONNRESET...: the Writable path meets the same error and reports it the usual way.
      return typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data);
    }
    if (streamWrap.state[streamWrap.lastWriteWasAsync] === 0) return true;
    // libuv holds the rest (it keeps its own copy) and later writes queue behind it.
    this.#writeReq = null;
    return false;
  }

  #newWriteReq(): WriteReq {
    const req = streamWrap!.newReq();
    req.oncomplete = (status: number) => {
      if (status < 0) this.#fail('SLUICE_ERR_UPSTREAM_RESET', `write failed (${status})`);
      else this.#handler?.onRequestDrain();
    };
    return req;
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

  /** `buf` is the shared read buffer: its first `n` bytes are valid until this returns. */
  #onRead(n: number, buf: Buffer): boolean {
    const handler = this.#handler;
    if (handler === null) {
      // Bytes on an idle connection: the server broke the protocol; do not reuse it.
      this.#close();
      return false;
    }
    this.#pendingData = buf;
    this.#pendingBytes = n;
    handler.corked(this.#feedCorked);
    return !this.#paused;
  }

  #feed(): void {
    const data = this.#pendingData!;
    this.#pendingData = null;
    try {
      const leftover = this.#parser.execute(data, this.#pendingBytes);
      if (leftover > 0) this.#parser.keepAlive = false;
    } catch (err) {
      this.#fail('SLUICE_ERR_UPSTREAM_PROTOCOL', err instanceof ParseError ? err.message : String(err));
    }
  }

  #onEnd(): void {
    if (this.#handler !== null && this.#parser.readsUntilClose) {
      this.#handler.corked(() => this.#parser.finishAtEof());
    }
    this.#fail('SLUICE_ERR_UPSTREAM_RESET', 'upstream closed the connection');
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

  #fail(code: ErrorCode, detail: string): void {
    const handler = this.#handler;
    this.#handler = null;
    this.#close();
    if (handler !== null && !this.#responseDone) {
      const retryable = !this.#parser.headReceived && this.served > 0 && code !== 'SLUICE_ERR_UPSTREAM_PROTOCOL';
      handler.onResponseError(code, detail, retryable);
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
