// One try of a request on one replica (Envoy's UpstreamRequest beside its router): takes a
// pooled connection, sends the head and the body the exchange hands it, and passes the
// upstream's response events on. A retry on another replica is a new Attempt; the body to
// replay is the exchange's, which outlives its attempts.

import type { Buffer } from 'node:buffer';
import type { ErrorCode } from '../errors/index.js';
import type { ReplicaRoute } from './route-table.js';
import type { HeaderLines, PoolWaiter, UpstreamConnection, UpstreamHandler } from './upstream/index.js';

/** The exchange, as its attempts see it. */
export interface AttemptClient {
  readonly finished: boolean;
  /** The whole upload has been read from the client. */
  readonly uploadDone: boolean;
  /** HEAD: the response has no body whatever its head says. */
  readonly noResponseBody: boolean;
  /** The request head for `replica`, up to and including the blank line. */
  requestHead(replica: ReplicaRoute): string;
  /** What of the body is already here (replayed and held back), framed for the upstream; null when nothing is. */
  takeBodySoFar(): Buffer | null;
  /** The attempt has its connection: the request is being sent (`connecting`: TCP not up yet). */
  onAttemptSending(connecting: boolean): void;
  /** The whole request is written. */
  onRequestSent(): void;
  /** The upstream socket cannot take more now: hold the client's upload back. */
  pauseUpload(): void;
  /** The request has no body: sending it again on a fresh socket loses nothing. */
  readonly bodyless: boolean;
  /** The replica answered 429 or 5xx: true when a fallback takes the request (this attempt is then let go). */
  onErrorHead(status: number): boolean;
  /**
   * The attempt failed, after its own resends on a fresh socket. `answered`: some of the
   * response had arrived (part of a head), so the request is not sent again anywhere.
   */
  onAttemptError(code: ErrorCode, detail: string, answered: boolean): void;
  onRequestDrain(): void;
  corked(fn: () => void): void;
}

/** Where the upstream's response goes: the exchange, or a flight that fans it out to several. */
export type ResponseSink = Pick<UpstreamHandler, 'onResponseHead' | 'onResponseData' | 'onResponseEnd'>;

export class Attempt implements UpstreamHandler, PoolWaiter {
  readonly replica: ReplicaRoute;
  /** This attempt is its replica's half-open breaker probe. */
  readonly probe: boolean;
  /** A 429 or 5xx head may go to a fallback instead of the client. */
  readonly #divertable: boolean;
  readonly #client: AttemptClient;
  readonly #sink: ResponseSink;
  #conn: UpstreamConnection | null = null;
  /**
   * The request head, held back until the first piece of the body: uWS hands the body over
   * right after the handler returns (usually from the same read), so head and body leave in
   * one write to the upstream instead of two.
   */
  #deferredHead: string | null = null;
  /** Sends again on a fresh socket after a reused one turned out closed. */
  #resends = 0;
  /** The response ended or failed: no connection will be taken or used any more. */
  #over = false;

  constructor(client: AttemptClient, sink: ResponseSink, replica: ReplicaRoute, probe: boolean, divertable: boolean) {
    this.#client = client;
    this.#sink = sink;
    this.replica = replica;
    this.probe = probe;
    this.#divertable = divertable;
  }

  /** Sends on a pooled connection, or waits for one (false: the upload waits too). */
  begin(): boolean {
    const conn = this.replica.pool.acquire(this);
    if (conn === null) return false;
    this.#send(conn);
    return true;
  }

  // PoolWaiter
  onConnection(conn: UpstreamConnection): boolean {
    if (this.#over || this.#client.finished) return false;
    this.#send(conn);
    return true;
  }

  #send(conn: UpstreamConnection): void {
    this.#conn = conn;
    const c = this.#client;
    const first = c.takeBodySoFar();
    const done = c.uploadDone;
    c.onAttemptSending(conn.connecting);
    const head = c.requestHead(this.replica);
    if (first === null && !done) {
      this.#deferredHead = head;
      return;
    }
    const ok = conn.send(this, head, c.noResponseBody, first, done);
    if (!ok && !done) c.pauseUpload();
  }

  /** Connected, with the head still held for the first body piece: that piece may be a view (see sendBody). */
  get awaitsFirstPiece(): boolean {
    return this.#conn !== null && this.#deferredHead !== null;
  }

  get connected(): boolean {
    return this.#conn !== null;
  }

  /**
   * A piece of the upload, framed for the upstream; `isLast` ends the request. A view
   * (`Uint8Array` over uWS's ArrayBuffer) may be passed only when awaitsFirstPiece: send()
   * copies it with the head before returning. False: the socket is full (pause the client).
   */
  sendBody(piece: Uint8Array | null, isLast: boolean): boolean {
    const conn = this.#conn!;
    const head = this.#deferredHead;
    let ok = true;
    if (head !== null) {
      this.#deferredHead = null;
      ok = conn.send(this, head, this.#client.noResponseBody, piece, isLast);
    } else {
      // Past the first piece the exchange passes its own copies (Buffers), never a view.
      if (piece !== null) ok = conn.write(piece as Buffer);
      if (isLast) conn.requestEnded();
    }
    if (isLast) this.#client.onRequestSent();
    return ok;
  }

  /** The client drained: the upstream may send again. */
  resume(): void {
    this.#conn?.resume();
  }

  /** Stops the upstream request (client gone, timeout, failure elsewhere). */
  abort(): void {
    this.#over = true;
    const conn = this.#conn;
    this.#conn = null;
    conn?.abort();
  }

  /** Waiting for one of the pool's connections (all in use); then `connecting` until TCP is up. */
  get awaitingConnection(): boolean {
    return this.#conn === null && !this.#over;
  }

  /** Waiting for a pooled connection or for TCP connect. */
  get connecting(): boolean {
    return this.#conn === null ? !this.#over : this.#conn.connecting;
  }

  // UpstreamHandler
  onResponseHead(status: number, lines: HeaderLines, contentLength: number): void {
    // Before the sink (a flight's joiners too) sees anything: a fallback's answer replaces it.
    if (this.#divertable && (status === 429 || status >= 500) && this.#client.onErrorHead(status)) return;
    this.#sink.onResponseHead(status, lines, contentLength);
  }

  onResponseData(chunk: Buffer): boolean {
    return this.#sink.onResponseData(chunk);
  }

  onResponseEnd(): void {
    this.#over = true;
    const conn = this.#conn;
    this.#conn = null;
    // The upstream answered before the upload ended: that socket cannot be reused.
    if (!this.#client.uploadDone) conn?.abort();
    this.#sink.onResponseEnd();
  }

  onResponseError(code: ErrorCode, detail: string, retryable: boolean, answered: boolean): void {
    this.#conn = null;
    const c = this.#client;
    if (c.finished) {
      this.#over = true;
      return;
    }
    // A reused keep-alive socket the server had just closed: send again on a fresh one,
    // but only when no byte of the request body was lost with it (nor of the response came).
    if (retryable && this.#resends < 2 && c.bodyless) {
      this.#resends++;
      const conn = this.replica.pool.acquire(this);
      if (conn !== null) this.#send(conn);
      return;
    }
    this.#over = true;
    c.onAttemptError(code, detail, answered);
  }

  onRequestDrain(): void {
    this.#client.onRequestDrain();
  }

  corked(fn: () => void): void {
    this.#client.corked(fn);
  }
}
