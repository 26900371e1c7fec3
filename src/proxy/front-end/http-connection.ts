// One client connection of the node front end: HTTP/1.1 on a Node TCP handle, read and
// written through the same StreamBase calls as the upstream client (upstream/transport.ts),
// without Node's Readable, Writable or http module. It offers the gateway uWS's request and
// response (client.ts), with uWS's behaviour where the gateway relies on it: 100-continue is
// answered here, a body piece is a view valid during onData only, the last piece says so,
// `close()` and a client's FIN fire onAborted at once, `cork` makes one send.
//
// Why not uWS: on the request users send (POST, a dozen SDK headers, a body), uWS.js's
// binding costs a native call per header and per write, more than its C++ parser saves
// (bench/results/2026-12-06-vm-ai.md: the thinnest uWS proxy 17.1 us per request, the same
// on Node's handles 13.3 us).

import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { streamBase, type StreamWrap, type WriteReq } from '../upstream/transport.js';
import type { ClientHandler, ClientListener, ClientRequest, ClientResponse, SentHeaders } from './client.js';
import { RequestParseError, RequestParser, type RequestHead, type RequestSink } from './request-parser.js';
import { clientOutput as out, type OutputTarget } from './client-output.js';

/** The libuv stream under an accepted net.Socket. */
interface StreamHandle {
  writeBuffer(req: object, data: Uint8Array): number;
  onread: (arrayBuffer: ArrayBuffer) => unknown;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
  /** Bytes libuv holds that the kernel has not taken yet. */
  readonly writeQueueSize: number;
}

/** What connections need of their server. */
export interface ConnectionOwner {
  /** By method as sent ('GET'); `other` takes the rest. */
  readonly handlers: ReadonlyMap<string, ClientHandler>;
  readonly other: ClientHandler;
  /** A request that cannot be parsed: answer `status` (400, 413, 431, 501, 505); the connection closes after. */
  readonly malformed: (res: ClientResponse, status: number, message: string) => void;
  remove(conn: HttpConnection): void;
}

// One read buffer for every client socket of this thread: a read is parsed and handed on
// synchronously, and what must outlive it (bytes of a paused or pipelined request) is copied.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const EMPTY = Buffer.alloc(0);
// The first buffer of a connection's write queue (HttpConnection.#enqueue); it doubles as needed.
const MIN_QUEUE_BYTES = 4096;
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

/** Whether this Node offers the StreamBase calls the node front end is built on. */
export function nodeFrontEndUsable(): boolean {
  return streamBase !== null;
}

/** The sweep's tick (seconds, coarse): a read stamps it on its connection, the sweep compares. */
let tick = 0;
export function advanceTick(): number {
  return ++tick;
}

export class HttpConnection implements RequestSink, ClientRequest, OutputTarget {
  readonly #owner: ConnectionOwner;
  readonly #socket: Socket;
  readonly #handle: StreamHandle;
  readonly #wrap: StreamWrap;
  readonly #parser: RequestParser;
  /** The head being handled: readable during the handler only. */
  #head: RequestHead | null = null;
  /** The current request's response; null between requests. */
  #response: NodeResponse | null = null;
  /** Body bytes of the current request still to come when Content-Length frames it; -1 otherwise. */
  #bodyLeft = -1;
  /** Bytes read but not parsed yet: the response paused the upload, or a pipelined request waits for the current response. */
  #held: Buffer | null = null;
  #paused = false;
  /** A whole request read, its response not over: the next one waits. */
  #waiting = false;
  /**
   * A response ended while libuv still held bytes of this connection's answers: the next
   * request waits until the client has taken them, so that a client that pipelines
   * requests and reads no answer cannot make the gateway hold answers without bound.
   */
  #unread = false;
  #closed = false;
  /** The last response said the connection ends after it: no request is parsed any more. */
  #ending = false;
  /** ...and its bytes are not all handed to libuv yet. */
  #endPending = false;
  /** The gateway drains: a response whose head is still to go says `connection: close`, and the connection ends after it. */
  draining = false;
  /** The gateway stopped accepting: the connection ends after the response in progress, whatever its head said. */
  stopping = false;
  /** Writes libuv still holds (each with its own buffer). */
  #writing = 0;
  #writeReq: WriteReq | null = null;
  /** The sweep's tick at the last read. */
  lastTick = tick;
  /** The sweep's tick when the head being read arrived in part; -1: no head is being read. */
  headSince = -1;
  #remote: ArrayBuffer | null = null;
  #remoteText: ArrayBuffer | null = null;
  readonly #resumeHeld: () => void;
  /**
   * TLS: the TCP handle under TLSWrap (Node's `_parent`), whose write queue is what the
   * kernel has not taken; null: plain TCP. A write libuv finishes later holds the bytes it
   * was given on TCP; over TLS the handle encrypts them (or copies what it cannot yet)
   * before writeBuffer returns (Node's TLSWrap::DoWrite).
   */
  readonly #tcpUnderTls: { readonly writeQueueSize: number } | null;
  /**
   * Bytes sent while a write is in flight wait here, copied, and go in one write when it
   * completes. TLS: TLSWrap takes one write at a time (a second one while the first is in
   * flight aborts the process, crypto_tls.cc `CHECK(!current_write_)`); Node's TLSSocket
   * queues in its Writable for the same reason. TCP: libuv would queue the write behind the
   * one in flight, holding the thread's whole output buffer (64 KiB and up) for a few bytes,
   * and a new buffer would take its place each time: a client that stops reading while a
   * coalesced stream is relayed to it would pin 64 KiB per upstream read (an SSE event) until
   * it is 8 MiB behind. Here it holds what it was sent, once.
   */
  #queue: Buffer | null = null;
  #queueBytes = 0;

  constructor(owner: ConnectionOwner, socket: Socket) {
    this.#owner = owner;
    this.#socket = socket;
    this.#wrap = streamBase!;
    this.#parser = new RequestParser(this);
    this.#resumeHeld = () => this.#feedHeld();
    const handle = (socket as unknown as { _handle: StreamHandle })._handle;
    this.#handle = handle;
    this.#tcpUnderTls = (socket as Socket & { encrypted?: boolean }).encrypted === true ? (handle as unknown as { _parent: { writeQueueSize: number } })._parent : null;
    const state = this.#wrap.state;
    const readBytes = this.#wrap.readBytes;
    const nodeOnRead = handle.onread;
    handle.useUserBuffer(READ_BUFFER);
    handle.onread = (arrayBuffer: ArrayBuffer): unknown => {
      const n = state[readBytes]!;
      // End of stream and errors: Node's own handling ('end', 'error', then 'close').
      if (n <= 0) return nodeOnRead.call(handle, arrayBuffer);
      this.lastTick = tick;
      out.cork(this);
      try {
        this.#feed(READ_BUFFER, 0, n);
      } finally {
        out.uncork();
      }
      if (this.#parser.headPending) {
        if (this.headSince < 0) this.headSince = tick;
      } else if (this.headSince >= 0) this.headSince = -1;
      return undefined;
    };
    // A client's FIN is its going away, as in uWS: no half-open request is served.
    socket.on('end', () => this.destroy());
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.#onClose());
  }

  // ---- reading ---------------------------------------------------------------------------

  #feed(buf: Buffer, start: number, end: number): void {
    const parser = this.#parser;
    while (start < end) {
      if (this.#closed || this.#ending) return;
      if (this.#paused || this.#waiting || this.#unread) {
        this.#hold(buf, start, end);
        return;
      }
      try {
        start = parser.execute(buf, start, end);
      } catch (err) {
        if (!(err instanceof RequestParseError)) throw err;
        this.#malformed(err);
        return;
      }
      if (parser.done) this.#requestRead();
    }
  }

  /** Keeps unparsed bytes and stops reading until they can be parsed: memory stays bounded by one read. */
  #hold(buf: Buffer, start: number, end: number): void {
    const rest = buf.subarray(start, end);
    this.#held = this.#held === null ? Buffer.from(rest) : Buffer.concat([this.#held, rest]);
    this.#readStop();
  }

  #feedHeld(): void {
    if (this.#closed || this.#paused || this.#waiting || this.#unread) return;
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      out.cork(this);
      try {
        this.#feed(held, 0, held.length);
      } finally {
        out.uncork();
      }
    }
    if (!this.#closed && !this.#paused && !this.#waiting && !this.#unread && !this.#ending) this.#readStart();
  }

  #readStop(): void {
    const handle = this.#handle;
    if (handle.reading) {
      handle.reading = false;
      handle.readStop();
    }
  }

  #readStart(): void {
    const handle = this.#handle;
    if (!handle.reading) {
      handle.reading = true;
      handle.readStart();
    }
  }

  // RequestSink
  onRequestHead(head: RequestHead): void {
    const res = new NodeResponse(this, head.keepAlive, head.versionMinor === 0);
    this.#response = res;
    this.#bodyLeft = head.chunked ? -1 : head.contentLength;
    this.#head = head;
    const owner = this.#owner;
    (owner.handlers.get(head.method) ?? owner.other)(res, this);
    this.#head = null;
    // The client waits for this before it sends the body: only when the handler means to
    // read it, not when it already answered (a 413, a 401), RFC 9110 10.1.1.
    if (head.expectContinue && (head.chunked || head.contentLength > 0) && !res.started && !res.ended) out.bytes(this, CONTINUE);
  }

  onRequestBody(chunk: Buffer): boolean {
    const res = this.#response!;
    let last = false;
    if (this.#bodyLeft > 0) {
      this.#bodyLeft -= chunk.length;
      last = this.#bodyLeft === 0;
    }
    // After the answer (an early refusal), the rest of the body is read and dropped.
    if (!res.ended) res.data(chunk, last);
    return !this.#paused && !this.#closed;
  }

  onRequestComplete(): void {
    const res = this.#response!;
    // Chunked, or announced empty: the last piece is an empty one, as uWS gives it.
    if (this.#bodyLeft <= 0 && !res.ended && !res.lastGiven) res.data(EMPTY, true);
  }

  #requestRead(): void {
    const res = this.#response;
    if (res === null || res.ended) this.#nextRequest();
    else this.#waiting = true;
  }

  #nextRequest(): void {
    this.#parser.reset();
    this.#response = null;
    this.#waiting = false;
  }

  /** The head being read took longer than the sweep's limit: 408, then close. */
  headTimedOut(ms: number): void {
    this.headSince = -1;
    if (this.#closed || this.#ending) return;
    out.cork(this);
    try {
      this.#malformed(new RequestParseError(408, `the request head did not arrive whole within ${ms} ms`));
    } finally {
      out.uncork();
    }
  }

  /**
   * Nothing came for the idle timeout (the sweep found it `expiring`). A request whose body
   * is still arriving, with nothing answered yet, is answered 408 by its listener, as a head
   * that does not arrive in time is (nginx's client_body_timeout); otherwise the connection
   * just closes (idle between requests, a head that sent nothing more, an answer sent).
   */
  idleTimedOut(ms: number): void {
    const res = this.#response;
    if (res === null || res.ended || res.started || this.#ending || this.#closed) {
      this.destroy();
      return;
    }
    out.cork(this);
    try {
      this.#malformed(new RequestParseError(408, `the request body stopped arriving: nothing came for ${ms} ms (listen.client_idle_timeout_ms)`));
    } finally {
      out.uncork();
    }
  }

  #malformed(err: RequestParseError): void {
    const res = this.#response;
    if (res !== null && !res.ended) {
      // A bad chunk in a body being read: nothing after it can be framed, so no further
      // request is read; the request's listener answers it (or, if it cannot, sees its
      // client go).
      this.#ending = true;
      res.malformed(err.status, err.message);
      if (!res.ended) this.destroy();
      return;
    }
    this.#ending = true;
    const answer = new NodeResponse(this, false, false);
    this.#response = answer;
    this.#owner.malformed(answer, err.status, err.message);
  }

  // ---- the response's calls ----------------------------------------------------------------

  /** The response has ended: the next request may be read, or the connection ends. */
  responseEnded(res: NodeResponse, close: boolean): void {
    if (this.#response !== res) return;
    // The idle timeout counts from here, not from the request's last byte.
    this.lastTick = tick;
    if (close) {
      this.#ending = true;
      this.#endPending = true;
      return;
    }
    // A pause is the response's, and ends with it: nothing could resume it later.
    this.#paused = false;
    // Else the body is still arriving: it is read and dropped, then the next request.
    if (this.#parser.done) this.#nextRequest();
    if (this.writing) {
      // The client has not taken the answers so far: what it sent next waits in its socket
      // (here, one read's bytes at most), as in nginx and Node's http; #drained goes on.
      this.#unread = true;
      this.#readStop();
      return;
    }
    this.#continueReading();
  }

  #continueReading(): void {
    if (this.#held !== null) queueMicrotask(this.#resumeHeld);
    else this.#readStart();
  }

  pause(res: NodeResponse): void {
    if (this.#response !== res || this.#paused) return;
    this.#paused = true;
    this.#readStop();
  }

  resume(res: NodeResponse): void {
    if (this.#response !== res || !this.#paused) return;
    this.#paused = false;
    // Not at once: uWS delivers what the resumed socket brings later, never inside resume().
    if (this.#held !== null) queueMicrotask(this.#resumeHeld);
    else if (!this.#waiting && !this.#ending) this.#readStart();
  }

  /**
   * The client has not taken what was written to it. TCP: a write libuv finishes later (the
   * kernel did not take it all). TLS, whose every write ends later: bytes waiting for the
   * write in flight, or that the kernel has not taken from the TCP handle under TLSWrap
   * (and a write in flight, whose end calls #drained).
   */
  get writing(): boolean {
    if (this.#writing === 0) return false;
    return this.#tcpUnderTls === null || this.#queue !== null || this.#tcpUnderTls.writeQueueSize > 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes written that the client's socket has not taken yet (beyond the kernel's buffer). */
  get queuedBytes(): number {
    return this.#closed ? 0 : this.#handle.writeQueueSize + this.#queueBytes;
  }

  /** Sends `data[0, length)` (the thread's output buffer). Returns true when libuv now holds it: the caller must not reuse it. */
  send(data: Buffer, length: number): boolean {
    if (this.#closed) return false;
    if (this.#writing > 0) {
      this.#enqueue(data, length);
      return false;
    }
    const req = (this.#writeReq ??= this.#newWriteReq());
    const err = this.#handle.writeBuffer(req, length === data.length ? data : data.subarray(0, length));
    if (err !== 0) {
      this.destroy();
      return false;
    }
    if (this.#wrap.state[this.#wrap.lastWriteWasAsync] === 0) return false;
    // The write ends later: the next one gets a request of its own, and (TCP) libuv writes
    // the rest from this memory, which the request keeps alive.
    this.#writeReq = null;
    this.#writing++;
    if (this.#tcpUnderTls !== null) return false;
    (req as WriteReq & { buffer: Buffer }).buffer = data;
    return true;
  }

  /** Copies `data[0, length)` after the queued bytes, into one buffer of its own (not Node's pool, whose 8 KiB slabs a small copy would keep). */
  #enqueue(data: Buffer, length: number): void {
    let q = this.#queue;
    const n = this.#queueBytes;
    if (q === null || n + length > q.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(MIN_QUEUE_BYTES, (n + length) * 2));
      if (q !== null) q.copy(bigger, 0, 0, n);
      q = this.#queue = bigger;
    }
    data.copy(q, n, 0, length);
    this.#queueBytes = n + length;
  }

  #newWriteReq(): WriteReq {
    const req = this.#wrap.newReq();
    req.oncomplete = (status: number) => {
      this.#writing--;
      // The client takes its answers, however slowly: the idle timeout counts from here.
      if (this.#unread) this.lastTick = tick;
      if (status < 0) {
        this.destroy();
        return;
      }
      if (this.#writing > 0) return;
      const queued = this.#queue;
      if (queued !== null) {
        const n = this.#queueBytes;
        this.#queue = null;
        this.#queueBytes = 0;
        this.send(queued, n);
        // A response that ended meanwhile ends its connection now that its last bytes are handed over.
        this.flushed();
        if (this.#writing > 0) return;
      }
      this.#drained();
    };
    return req;
  }

  #drained(): void {
    if (this.#unread) {
      this.#unread = false;
      if (!this.#closed && !this.#ending) this.#continueReading();
    }
    const res = this.#response;
    if (res === null || this.#closed) return;
    out.cork(this);
    try {
      res.writable();
    } finally {
      out.uncork();
    }
  }

  /** After the last response's bytes: FIN once libuv has written them (its shutdown waits for the write queue). */
  flushed(): void {
    if (!this.#endPending || this.#queue !== null) return;
    this.#endPending = false;
    // The idle timeout now waits for the client to close, once libuv has written all.
    this.lastTick = tick;
    if (!this.#closed) this.#socket.end();
  }

  /**
   * The gateway stops: an idle connection closes now, a busy one after its response (as
   * nginx does), so that keep-alive clients reconnect to an instance that stays.
   */
  drain(): void {
    this.draining = true;
    this.stopping = true;
    if (this.#response === null && this.#parser.idle && this.#held === null) this.destroy();
  }

  /** Drops the connection; a response not over hears onAborted now. */
  destroy(): void {
    if (this.#closed) return;
    out.sendNow(this);
    this.#closed = true;
    this.#socket.destroy();
    this.#abortResponse();
  }

  #onClose(): void {
    this.#closed = true;
    this.#owner.remove(this);
    this.#abortResponse();
  }

  #abortResponse(): void {
    const res = this.#response;
    if (res !== null && !res.ended) res.aborted();
  }

  /** Whether the idle timeout applies: waiting for the client's bytes, with nothing to answer yet. */
  get expiring(): boolean {
    // Ended by its last response (FIN sent): whatever the client still sends is not read.
    if (this.#ending) return this.#writing === 0 && !this.#endPending;
    if (this.#paused || this.#waiting) return false;
    const res = this.#response;
    return res === null || res.ended || !res.started;
  }

  remoteAddress(): ArrayBuffer {
    return (this.#remote ??= addressBytes(this.#socket.remoteAddress ?? ''));
  }

  remoteAddressText(): ArrayBuffer {
    return (this.#remoteText ??= new Uint8Array(Buffer.from(this.#socket.remoteAddress ?? '', 'latin1')).buffer);
  }

  // ClientRequest: the head being handled.
  getUrl(): string {
    return this.#head!.url;
  }

  getQuery(): string {
    return this.#head!.query;
  }

  getCaseSensitiveMethod(): string {
    return this.#head!.method;
  }

  getHeader(lowerCaseName: string): string {
    const head = this.#head!;
    const names = head.names;
    for (let i = 0; i < head.count; i++) if (names[i] === lowerCaseName) return head.value(i);
    return '';
  }

  sentHeaders(): SentHeaders {
    return this.#head!;
  }

  forEach(cb: (name: string, value: string) => void): void {
    const head = this.#head!;
    const names = head.names;
    for (let i = 0; i < head.count; i++) cb(names[i]!, head.value(i));
  }
}

const enum Framing {
  /** Nothing of the body yet: the head is still open. */
  Open,
  Length,
  Chunked,
  /** A body of unknown length to an HTTP/1.0 client: it ends with the connection. */
  UntilClose,
  Ended,
}

// tryEnd's answers, shared: the caller destructures them at once.
const OK_DONE: [boolean, boolean] = [true, true];
const OK_MORE: [boolean, boolean] = [true, false];
const SLOW_DONE: [boolean, boolean] = [false, true];
const SLOW_MORE: [boolean, boolean] = [false, false];

/** One request's response: uWS's HttpResponse on the node front end (client.ts). */
export class NodeResponse implements ClientResponse {
  readonly #conn: HttpConnection;
  /** False once the head said `connection: close` (or the client did). */
  #keepAlive: boolean;
  /** HTTP/1.0 client: no chunked framing; keep-alive said in the head. */
  readonly #http10: boolean;
  #framing = Framing.Open;
  /** The status line is written. */
  started = false;
  #aborted = false;
  #offset = 0;
  #total = 0;
  #onData: ((chunk: Uint8Array, isLast: boolean) => void) | null = null;
  #onAborted: (() => void) | null = null;
  /** Takes the place of both handlers (listen()). */
  #listener: ClientListener | null = null;
  #listenerTakesData = false;
  #onWritable: ((offset: number) => boolean) | null = null;
  /** The body's last piece was handed to onData. */
  lastGiven = false;

  constructor(conn: HttpConnection, keepAlive: boolean, http10: boolean) {
    this.#conn = conn;
    this.#keepAlive = keepAlive;
    this.#http10 = http10;
  }

  get ended(): boolean {
    return this.#framing === Framing.Ended || this.#aborted;
  }

  data(chunk: Uint8Array, last: boolean): void {
    if (this.#listenerTakesData) {
      if (last) this.lastGiven = true;
      this.#listener!.onClientData(chunk, last);
      return;
    }
    const handler = this.#onData;
    if (handler === null) return;
    if (last) this.lastGiven = true;
    handler(chunk, last);
  }

  writable(): void {
    const handler = this.#onWritable;
    if (handler !== null && !this.ended) handler(this.#offset);
  }

  malformed(status: number, message: string): void {
    if (this.ended) return;
    if (this.#listener !== null) this.#listener.onClientMalformed(status, message);
    else this.aborted();
  }

  aborted(): void {
    if (this.#aborted || this.#framing === Framing.Ended) return;
    this.#aborted = true;
    if (this.#listener !== null) this.#listener.onClientAborted();
    else this.#onAborted?.();
  }

  // ClientResponse
  writeStatus(status: string | Uint8Array | ArrayBuffer): this {
    const conn = this.#conn;
    out.cork(conn);
    out.text(conn, 'HTTP/1.1 ');
    out.any(conn, status);
    out.crlf(conn);
    this.started = true;
    out.uncork();
    return this;
  }

  writeHeader(name: string | Uint8Array | ArrayBuffer, value: string | Uint8Array | ArrayBuffer): this {
    const conn = this.#conn;
    out.cork(conn);
    if (!this.started) this.writeStatus('200 OK');
    out.any(conn, name);
    out.text(conn, ': ');
    if (typeof value === 'string') out.headerText(conn, value);
    else out.any(conn, value);
    out.crlf(conn);
    out.uncork();
    return this;
  }

  /** Closes the head with the connection, date and framing lines. */
  #endHead(contentLength: number, chunked: boolean, closing: boolean): void {
    const conn = this.#conn;
    if (!this.started) this.writeStatus('200 OK');
    if (closing || !this.#keepAlive || conn.draining) {
      // Ended after this response, as its head says: a connection that said keep-alive
      // and closed anyway would meet its client's next request with a reset.
      this.#keepAlive = false;
      out.text(conn, 'connection: close\r\n');
    } else if (this.#http10) out.text(conn, 'connection: keep-alive\r\n');
    out.date(conn);
    if (chunked) out.text(conn, 'transfer-encoding: chunked\r\n');
    else if (contentLength >= 0) out.contentLength(conn, contentLength);
    out.crlf(conn);
  }

  write(chunk: string | Uint8Array | ArrayBuffer): boolean {
    const conn = this.#conn;
    if (this.ended || conn.closed) return true;
    out.cork(conn);
    const slow = conn.writing;
    if (this.#framing === Framing.Open) {
      this.#framing = this.#http10 ? Framing.UntilClose : Framing.Chunked;
      this.#endHead(-1, !this.#http10, this.#http10);
    }
    const n = out.lengthOf(chunk);
    if (n > 0) {
      if (this.#framing === Framing.Chunked) {
        out.hex(conn, n);
        out.crlf(conn);
        out.any(conn, chunk);
        out.crlf(conn);
      } else {
        out.any(conn, chunk);
      }
      this.#offset += n;
    }
    out.uncork();
    return !slow;
  }

  end(body?: string | Uint8Array | ArrayBuffer, closeConnection = false): this {
    const conn = this.#conn;
    if (this.ended || conn.closed) return this;
    out.cork(conn);
    const n = body === undefined ? 0 : out.lengthOf(body);
    switch (this.#framing) {
      case Framing.Open:
        this.#endHead(n, false, closeConnection);
        if (n > 0) out.any(conn, body!);
        break;
      case Framing.Chunked:
        if (n > 0) {
          out.hex(conn, n);
          out.crlf(conn);
          out.any(conn, body!);
          out.crlf(conn);
        }
        out.text(conn, '0\r\n\r\n');
        break;
      default:
        if (n > 0) out.any(conn, body!);
    }
    this.#offset += n;
    this.#finish(closeConnection || this.#framing === Framing.UntilClose);
    out.uncork();
    return this;
  }

  endWithoutBody(reportedContentLength?: number, closeConnection = false): this {
    const conn = this.#conn;
    if (this.ended || conn.closed) return this;
    out.cork(conn);
    if (this.#framing === Framing.Open) this.#endHead(reportedContentLength ?? -1, false, closeConnection);
    this.#finish(closeConnection);
    out.uncork();
    return this;
  }

  tryEnd(chunk: string | Uint8Array | ArrayBuffer, totalSize: number): [boolean, boolean] {
    const conn = this.#conn;
    if (this.ended || conn.closed) return OK_DONE;
    out.cork(conn);
    const slow = conn.writing;
    if (this.#framing === Framing.Open) {
      this.#framing = Framing.Length;
      this.#total = totalSize;
      this.#endHead(totalSize, false, false);
    }
    const n = out.lengthOf(chunk);
    if (n > 0) out.any(conn, chunk);
    this.#offset += n;
    const done = this.#offset >= this.#total;
    if (done) this.#finish(false);
    out.uncork();
    return done ? (slow ? SLOW_DONE : OK_DONE) : slow ? SLOW_MORE : OK_MORE;
  }

  #finish(close: boolean): void {
    this.#framing = Framing.Ended;
    this.#conn.responseEnded(this, close || !this.#keepAlive || this.#conn.stopping);
  }

  getWriteOffset(): number {
    return this.#offset;
  }

  bufferedAmount(): number {
    return this.#conn.queuedBytes;
  }

  close(): this {
    // uWS tells the response's abort handler at once, inside close().
    this.#conn.destroy();
    return this;
  }

  cork(cb: () => void): this {
    out.cork(this.#conn);
    try {
      cb();
    } finally {
      out.uncork();
    }
    return this;
  }

  onWritable(handler: (offset: number) => boolean): this {
    this.#onWritable = handler;
    return this;
  }

  onAborted(handler: () => void): this {
    this.#onAborted = handler;
    return this;
  }

  onData(handler: (chunk: Uint8Array, isLast: boolean) => void): this {
    this.#onData = handler;
    return this;
  }

  listen(listener: ClientListener, body: boolean): void {
    this.#listener = listener;
    this.#listenerTakesData = body;
  }

  pause(): void {
    this.#conn.pause(this);
  }

  resume(): void {
    this.#conn.resume(this);
  }

  getRemoteAddress(): ArrayBuffer {
    return this.#conn.remoteAddress();
  }

  getRemoteAddressAsText(): ArrayBuffer {
    return this.#conn.remoteAddressText();
  }
}

/** An address's bytes as uWS gives them: 4 for IPv4, 16 for IPv6. */
function addressBytes(text: string): ArrayBuffer {
  if (text.includes('.') && !text.includes(':')) return Uint8Array.from(text.split('.'), Number).buffer;
  const bytes = new Uint8Array(16);
  let v4 = '';
  let groups = text;
  // An IPv4-mapped tail ("::ffff:1.2.3.4") is two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    v4 = text.slice(lastColon + 1);
    groups = text.slice(0, lastColon + 1) + '0:0';
  }
  const [headPart = '', tailPart] = groups.split('::');
  const head = headPart === '' ? [] : headPart.split(':');
  const tail = tailPart === undefined || tailPart === '' ? [] : tailPart.split(':');
  const all = [...head, ...new Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  for (let i = 0; i < 8; i++) {
    const g = parseInt(all[i] ?? '0', 16) || 0;
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  }
  if (v4 !== '') v4.split('.').forEach((p, i) => { bytes[12 + i] = Number(p); });
  return bytes.buffer;
}
