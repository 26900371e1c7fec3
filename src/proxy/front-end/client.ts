// What the gateway needs of a client's request and of its response: the part of
// uWebSockets.js's HttpRequest and HttpResponse that sluice uses, so that uWS's objects
// (TLS) and the node front end's (plain HTTP, http-connection.ts) serve the same gateway
// code. The node front end keeps uWS's rules, which the gateway already follows: the
// request is readable during the handler only; a response is not touched once it has
// ended or its client has gone (onAborted); `cork` batches writes into one send.

type Bytes = string | Uint8Array | ArrayBuffer;

export interface ClientRequest {
  /** The target's path, before any '?'. */
  getUrl(): string;
  /** After the first '?', without it ('' or undefined when there is none). */
  getQuery(): string | undefined;
  /** As sent (methods are case-sensitive: `get` is not GET). */
  getCaseSensitiveMethod(): string;
  /** A header's value ('' when absent), by its lower-case name. */
  getHeader(lowerCaseName: string): string;
  /** Every header line: the name lower-cased. */
  forEach(cb: (name: string, value: string) => void): void;
  /**
   * The header lines as the client sent them, where the front end keeps them (the node
   * front end; uWS does not): the upstream gets runs of them as they are, not each one
   * re-serialised from its name and value.
   */
  sentHeaders?(): SentHeaders;
}

/** A request's header section as read: line k is `names[k]` and `value(k)`, and text[lineStart(k), lineStart(k + 1)) as sent. */
export interface SentHeaders {
  readonly names: readonly string[];
  value(k: number): string;
  readonly count: number;
  readonly text: string;
  /** k = count: where the head's empty line starts. */
  lineStart(k: number): number;
  /** The framing the parser read and validated (-1: no Content-Length): its lines need no second reading. */
  readonly contentLength: number;
  readonly chunked: boolean;
}

export interface ClientResponse {
  /** "200 OK" (and any header lines after it, each after a CRLF), written after "HTTP/1.1 ". */
  writeStatus(status: Bytes): ClientResponse;
  writeHeader(name: Bytes, value: Bytes): ClientResponse;
  /** A piece of a body of unknown length (chunked). False: the client is slow; wait for onWritable. */
  write(chunk: Bytes): boolean;
  /** The last (or only) piece; then the response is over. */
  end(body?: Bytes, closeConnection?: boolean): ClientResponse;
  /** The head only (HEAD, 204, 304): no body and no framing header unless a length is reported. */
  endWithoutBody(reportedContentLength?: number, closeConnection?: boolean): ClientResponse;
  /**
   * A piece of a body of `totalSize` bytes: [ok, done]. Not ok: the client is slow; go on
   * at onWritable, from the write offset it reports.
   */
  tryEnd(chunk: Bytes, totalSize: number): [boolean, boolean];
  /** Body bytes the response has taken so far. */
  getWriteOffset(): number;
  /**
   * Bytes written that the client's socket has not taken yet, where the front end can tell
   * (the node front end: libuv's write queue; uWS's HttpResponse cannot).
   */
  bufferedAmount?(): number;
  /** Drops the connection at once (a cut body must not look whole). */
  close(): ClientResponse;
  cork(cb: () => void): ClientResponse;
  /** The client can take more: `offset` is getWriteOffset(). Return false to be called again. */
  onWritable(handler: (offset: number) => boolean): ClientResponse;
  /** The client went away before the response ended. */
  onAborted(handler: () => void): ClientResponse;
  /** A piece of the request body: a view valid during the call only. */
  onData(handler: (chunk: ArrayBuffer | Uint8Array, isLast: boolean) => void): ClientResponse;
  /**
   * onAborted, and onData when `body`, as a listener's methods, where the front end offers
   * it (the node front end; uWS takes functions): no closure made per request.
   */
  listen?(listener: ClientListener, body: boolean): void;
  /** Stops reading the request body (backpressure toward the client). */
  pause(): void;
  resume(): void;
  /** 4 bytes (IPv4) or 16 (IPv6). */
  getRemoteAddress(): ArrayBuffer;
  getRemoteAddressAsText(): ArrayBuffer;
}

/** Who hears of a request's body pieces and of its client going away (the exchange). */
export interface ClientListener {
  onClientData(chunk: ArrayBuffer | Uint8Array, isLast: boolean): void;
  onClientAborted(): void;
  /**
   * The body broke its framing (a bad chunk; the node front end only: uWS answers such a
   * request itself): no more of it will come, and the connection closes after the answer.
   * `status` is the parser's (400, 431).
   */
  onClientMalformed(status: number, message: string): void;
}

/** The gateway's handler for one request: called with the head readable. */
export type ClientHandler = (res: ClientResponse, req: ClientRequest) => void;

/** A request body piece as bytes: uWS hands an ArrayBuffer, the node front end a view. */
export function bytesOf(chunk: ArrayBuffer | Uint8Array): Uint8Array {
  return chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
}
