// One client request and its upstream request: the bridge between a client's response and
// an UpstreamConnection. It streams both bodies through with backpressure both ways and
// aborts the upstream the moment the client goes away.

// Imported, not the global: a module binding costs less per use than Node's global
// accessor (measured ~12 ns per Buffer use).
import { Buffer } from 'node:buffer';
import { bytesOf, type ClientListener, type ClientResponse } from './front-end/client.js';
import { corsHeaders, corsLines } from './cors.js';
import { errorBody, ERRORS, malformedRequestCode, ollamaErrorBody, responsesErrorEvent, type ErrorCode } from '../errors/index.js';
import { contentCoding, headersWithAge, servedByOf, type CachedResponse, type CacheWant, type TokenCounter, type Verdict } from '../policy/index.js';
import type { DeploymentRoute, KeyRoute, ReplicaRoute } from './route-table.js';
import { withQuery } from '../target-query.js';
import { Attempt, type AttemptClient } from './attempt.js';
import { coalescesWithHead, type HeaderLines } from './upstream/index.js';
import { connectionTokens, type ClientHead, HeaderKind, isDroppedResponseKind, kindOfName, sameName, startsWithName, withoutHeaders } from './headers.js';
import { closesUnread, endWithoutBody, headBytes, headCopy, headLine, headStart, headStartWith, headText, headUint, headView, NO_RETRY, RETRY_AFTER, statusLine, writeJsonResponse, type CacheStatus } from './respond.js';
import type { Flight } from './flight.js';
import { clientLocation } from './redirect-location.js';
import type { RequestTrace } from '../tracing/index.js';
import { holdClock, monoNow, releaseClock, wallNow } from './clock.js';

/** What the timeout sweep checks; see Gateway.sweep(). */
export const enum Phase {
  /** Waiting for a rate-limit verdict from Redis. */
  Admitting,
  /** Waiting for the shared cache tier (Redis); its command timeout bounds the wait. */
  CacheLookup,
  /** Waiting in the deployment's queue for a replica under max_inflight. */
  Queued,
  /** Waiting for the deployment's first ready replica (starting, restarting, waking). */
  Held,
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

// Scratch for corked writes, the only module-level state of the exchange. uWS's cork(cb)
// runs cb before it returns, and a callback made per call would be a closure per response
// (per chunk on a stream): instead, the exchange and the call's arguments go here and a
// module-level function run by cork reads them back. A cork nested in another (a flight
// relaying to a joiner from its leader's upstream read) overwrites them only after the
// outer call has read its own, so nothing here outlives one cork call.
const cork = {
  exchange: null as unknown as Exchange,
  fn: null as unknown as (this: Exchange) => void,
  status: 0,
  headers: [] as readonly string[],
  length: -1,
  chunk: null as unknown as Buffer,
  entry: null as unknown as CachedResponse,
};
/** A stream's line longer than this is relayed as it comes, not held whole (#writeWholeLines). */
const MAX_HELD_LINE = 1024 * 1024;

const LF_LF = 0x0a0a;
const CR_CR = 0x0d0d;

/** The last two bytes sent, `before` being those before `chunk`. */
function lastTwoBytes(chunk: Buffer, before: number): number {
  const n = chunk.length;
  return n >= 2 ? (chunk[n - 2]! << 8) | chunk[n - 1]! : ((before << 8) | chunk[0]!) & 0xffff;
}

/** The chunk ends a line (LF, or CR: SSE allows either). */
function endsLine(chunk: Buffer): boolean {
  const last = chunk[chunk.length - 1];
  return last === 0x0a || last === 0x0d;
}

function runCorked(): void {
  cork.fn.call(cork.exchange);
}
// Relays to a joiner or a cache hit, each under that client's own cork: the events arrive
// from another response's callbacks (or from the cache), not from this one's.
function relayHeadCorked(this: Exchange): void {
  this.respondHead(cork.status, cork.headers, cork.length);
}
function relayDataCorked(this: Exchange): void {
  this.onResponseData(cork.chunk);
}
function relayEndCorked(this: Exchange): void {
  this.onResponseEnd();
}
function serveCachedCorked(this: Exchange): void {
  const e = cork.entry;
  this.respondHead(e.status, headersWithAge(e.headers, e.storedAt, wallNow()), e.contentLength);
  this.replayCached();
}
function replayCorked(this: Exchange): void {
  this.replayCached();
}
function replayLater(ex: Exchange): void {
  ex.corked(replayCorked);
}

/**
 * A cache hit is written this much per turn of the event loop: the bytes leave when the
 * turn's cork ends, and the next turn's first write finds out whether the client took
 * them. Written whole, an entry (up to max_entry_bytes) was copied for every client that
 * did not read it: 100 stalled clients of a 3.7 MB stream held 300 MB.
 */
const REPLAY_SLICE_BYTES = 256 * 1024;

/** How much of a late error status's body is read for its message. */
const LATE_ERROR_BYTES = 4096;

/**
 * The message in an error answer's body: OpenAI's `error.message`, Ollama's `error`, a
 * FastAPI `detail`, or the text itself (one line, at most 300 characters); '' for none.
 */
function serverMessage(body: Buffer): string {
  const text = body.toString('utf8');
  let said: unknown = text;
  try {
    const json = JSON.parse(text) as Record<string, unknown>;
    const error = json.error;
    said = typeof error === 'string' ? error : typeof error === 'object' && error !== null ? (error as Record<string, unknown>).message : json.detail ?? json.message;
  } catch {
    // Not JSON (or cut at LATE_ERROR_BYTES): the text as it is.
  }
  return typeof said === 'string' ? said.replace(/\s+/g, ' ').trim().slice(0, 300) : '';
}

const CHUNK_TERMINATOR = '\r\n';
const WAKING = ': waking\n\n';
/** The Responses API, whose streams the gateway ends with an event of their own shape (responsesErrorEvent). */
const RESPONSES_PATH = '/v1/responses';
/** What a request that got its event-stream head early asks its server for: the answer uncompressed. */
const IDENTITY_LINE = 'accept-encoding: identity\r\n';
const ACCEPT_ENCODING = ['accept-encoding'];
const STREAM_TRUE = /"stream"\s*:\s*true/;
const LAST_CHUNK = '0\r\n\r\n';
const NO_BYTES = Buffer.alloc(0);

/** What an exchange reports to: the worker's gateway. */
export interface ExchangeOwner {
  /** Runs the filters after the one that paused the request, then the balancer. */
  continueRequest(ex: Exchange): void;
  /** A failed attempt: true when the request was sent to another replica. */
  retryElsewhere(ex: Exchange, code: ErrorCode): boolean;
  /**
   * No attempt in progress: true when the request was sent to one of its fallbacks.
   * `failed`: the status the gateway would have answered, which the deployment that failed
   * counts: a refused or reset connection's 502 (504), every breaker open's 503; 0 for none
   * (no replica ready yet, all busy: not a failure).
   */
  fallBack(ex: Exchange, failed: number): boolean;
  /** The replica answered `status` (429, 5xx): true when a fallback takes the request instead. */
  divert(ex: Exchange, status: number): boolean;
  onExchangeDone(ex: Exchange): void;
}

/** A filter waiting for the whole request body (Exchange.awaitBody). */
export interface BodyWaiter {
  onWholeBody(ex: Exchange): void;
}

export class Exchange implements AttemptClient, ClientListener {
  readonly res: ClientResponse;
  readonly #owner: ExchangeOwner;
  readonly requestId: string;
  readonly method: string;
  /** The deployment serving the request: the one addressed, or the fallback that took it. */
  route: DeploymentRoute;
  /** The deployment addressed, whose filters the request passed. */
  readonly addressed: DeploymentRoute;
  /** The next of the addressed deployment's fallbacks to try. */
  fallbackIndex = 0;
  /** What a fallback's request head is rebuilt from; null when there are no fallbacks. */
  fallbackHead: FallbackHead | null = null;
  /** `x-sluice-served-by` when a fallback took the request; null otherwise. */
  servedByLine: Uint8Array | null = null;
  /** The try in progress, or the last one; null until dispatched (admission, queue) and after a failed try is let go. */
  attempt: Attempt | null = null;
  /** This request is its replica's half-open breaker probe (set by the balancer's pick: PickContext). */
  probe = false;
  /** Replicas whose attempt failed before answering, for retries (a few at most); null until one has. */
  #failedOn: ReplicaRoute[] | null = null;
  readonly key: KeyRoute | undefined;
  /** Rate-limit buckets this request was admitted by (LLM tokens are charged after). */
  buckets: readonly BucketRefLike[] | null = null;
  /** The verdict whose RateLimit-* headers go on the response. */
  rateLimit: Verdict | null = null;
  tokenCounter: TokenCounter | null = null;
  /** The request's span (config `tracing`); null when tracing is off. */
  trace: RequestTrace | null = null;
  /** Retries on another replica so far. */
  attempts = 0;
  /** In its deployment's wait queue (holds a place in the shared queue length). */
  queued = false;
  /** Its place among the deployment's waiters across workers (ReplicaQueue); set when queued. */
  ticket = 0;
  /** The client's path (no query), and address ('' when not read): for the access log. */
  path = '';
  /** The path after the route's segment, without the query: what the replica is asked for. */
  upstreamPath = '';
  /** The next request filter to run (FilterChain.request). */
  nextFilter = 0;
  client = '';
  /** The `x-sluice-version` line when the request came through its model's alias; null otherwise. */
  versionLine: Uint8Array | null = null;
  /** Response body bytes sent to the client. */
  responseBytes = 0;
  /** The gateway's own errors in Ollama's shape (a request through Ollama's API at the root). */
  ollamaErrors = false;
  /** The Origin of a browser's request at the root that listen.cors_origins allows: its answer says the page may read it (proxy/cors.ts). */
  corsOrigin: string | null = null;
  /**
   * A browser's request (it sent an Origin) at the root: who may read its answer is for
   * listen.cors_origins to say, so the model server's own Access-Control-* lines never reach
   * it (llama-cpp-python's and vLLM's let every origin read, with credentials).
   */
  browserAtRoot = false;
  /** When the request arrived (monoNow): its duration, time to first byte and overhead count from then. */
  startedAt: number;
  /** When the upstream's response head arrived (same clock as startedAt); -1 until then. */
  headAt = -1;
  // For the gateway-overhead and GenAI histograms (same clock; -1 until then): the first
  // upstream send, the first response body byte, the end of the upstream's response, and
  // the time spent waiting in the queue or held for a ready replica.
  sentAt = -1;
  firstByteAt = -1;
  upstreamEndAt = -1;
  waitedMs = 0;
  /** Index in the gateway's active list (swap-remove); -1 when not listed. */
  activeIndex = -1;
  phase = Phase.Connecting;
  /** When the current phase began; kept exactly only while admitting or queued (cold paths). */
  phaseSince: number;
  /**
   * Bumped on every step forward (dispatch, phase change, body chunk). The timeout sweep
   * times a phase from the sweep that first saw the current value, so the hot path reads
   * no clock per step; timeouts fire up to one sweep interval late, never early.
   */
  progress = 0;
  sweptProgress = -1;
  sweptAt = 0;

  readonly #pathQuery: string;
  #headRest: string;
  #noResponseBody: boolean;
  // Request body
  readonly #expectBody: boolean;
  readonly #chunkedUpload: boolean;
  /** An answer given before the body was read leaves the connection open (see closesUnread). */
  readonly #drainable: boolean;
  #bodyBytes = 0;
  #bodyDone: boolean;
  #heldBody: Buffer[] | null = null;
  /** Every body chunk sent so far while they fit the replay limit; null once they do not. */
  #sentBody: Buffer[] | null;
  #sentBytes = 0;
  #clientPaused = false;
  // Response
  status = 0;
  #responded = false;
  #finished = false;
  #mode = BodyMode.None;
  /** The format of a body without a length: a failure mid-stream ends it in that format. */
  #kind = StreamKind.Other;
  /**
   * The body is compressed (Content-Encoding): whatever its format, its bytes go out as they
   * come (a line end in them is no event's end) and a failure cuts it, as any other body.
   */
  #encoded = false;
  #total = 0;
  #pending: Buffer[] | null = null;
  #pendingOffset = 0;
  /** A stream's line not yet ended (chunked SSE / NDJSON), in pieces: held until its end arrives. */
  #heldLine: Buffer[] | null = null;
  #heldBytes = 0;
  /** The last two bytes of the stream sent: whether they end an SSE event. */
  #lastTwo = 0;
  /** Body bytes the client's socket took whole before anything was held back (length mode). */
  #written = 0;
  #writableHooked = false;
  /**
   * -1 while the client keeps up; once a write finds it slow, the body bytes handed to it
   * since, until its socket drains (#onWritable). A flight cuts a member too far behind.
   */
  #behind = -1;
  #upstreamEnded = false;
  /** The cache entry being replayed to the client (serveCached), and its next chunk. */
  #replay: CachedResponse | null = null;
  #replayAt = 0;
  errorCode: ErrorCode | null = null;
  /**
   * The model server's own x-request-id (a provider's `req_...`, which its support asks
   * for): passed on as x-upstream-request-id, since the client's x-request-id is sluice's,
   * and logged. Null when the server sent none, or for a cache hit.
   */
  upstreamRequestId: string | null = null;
  // Cache and coalescing state: it stays null for deployments without a cache policy, so
  // that they pay null checks only.
  /** A cache candidate whose key is not known yet (the body is still being read). */
  cacheWant: CacheWant | null = null;
  /** Who asks, for the cache key: '' when anonymous or when the deployment shares across callers. */
  cacheCaller = '';
  /**
   * The x-sluice-cache response header: 'bypass' until the cache answers or records the
   * request; a 'miss' is counted once a replica's head comes for it, and a gateway error
   * before that says 'bypass' again.
   */
  cacheStatus: CacheStatus = 'bypass';
  /** The coalesced request this exchange leads or joins. */
  flight: Flight | null = null;
  /** A late joiner of a flight: the next recorded chunk its catch-up writes; -1 once live (Flight.continueCatchUp). */
  catchUp = -1;
  /** Its catch-up's body bytes so far, plus the recording's when it joined (Flight.continueCatchUp). */
  catchUpBytes = 0;
  /** A filter waiting for the whole body (the cache, for its key); null when none waits. */
  #bodyWaiter: BodyWaiter | null = null;
  /** The body size past which the waiter is called before the body is whole (awaitBody's `maxBytes`). */
  #bodyWaitLimit = 0;
  /** A flight leader whose client left while joiners still wait for the upstream response. */
  #detached = false;
  /** A held SSE request got its head and `: waking` comments before any upstream answered. */
  #earlyHead = false;
  #lastBeat = 0;
  /**
   * The server answered a held stream (its head already sent) with an error status: its
   * body's first bytes are kept for the message of the stream's error event; null otherwise.
   */
  #lateError: Buffer[] | null = null;

  constructor(
    owner: ExchangeOwner,
    res: ClientResponse,
    requestId: string,
    method: string,
    route: DeploymentRoute,
    key: KeyRoute | undefined,
    pathQuery: string,
    headRest: string,
    /** The client's Content-Length; -1 when absent (chunked or no body). */
    contentLength: number,
    chunkedUpload: boolean,
  ) {
    const expectBody = chunkedUpload || contentLength > 0;
    this.#owner = owner;
    this.res = res;
    this.requestId = requestId;
    this.method = method;
    this.route = route;
    this.addressed = route;
    this.key = key;
    this.#pathQuery = pathQuery;
    this.#headRest = headRest;
    this.#noResponseBody = method === 'HEAD';
    this.#expectBody = expectBody;
    this.#chunkedUpload = chunkedUpload;
    this.#drainable = !closesUnread(contentLength, chunkedUpload);
    this.#bodyDone = !expectBody;
    // A body announced larger than the replay limit is never kept, so never retried (nor
    // sent to a fallback), however little of it has arrived when a connection fails.
    const replay = route.policies.retry;
    this.#sentBody = expectBody && (replay.attempts > 0 || route.fallbacks !== null) && contentLength <= replay.replay_max_bytes ? [] : null;
    this.startedAt = monoNow();
    this.phaseSince = this.startedAt;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /**
   * The whole body was read before the exchange began (ModelRequest), since `arrivedAt`: it
   * waits for the attempt as if just uploaded, and the request's times count from its arrival.
   */
  bodyRead(body: Buffer, arrivedAt: number): void {
    this.startedAt = arrivedAt;
    this.#bodyBytes = body.length;
    this.#bodyDone = true;
    if (body.length > 0) this.#heldBody = [body];
  }

  /**
   * Waits (admission, queue, hold) before a replica is chosen: a large upload is held back
   * in the socket; a small one is read, so that the socket shows the client leaving (a
   * paused one would not, and the request would go out for nobody).
   */
  hold(phase = Phase.Admitting): void {
    this.#setPhase(phase);
    this.phaseSince = monoNow();
    if (this.#expectBody && !this.#bodyDone && !this.#drainable) this.#pauseClient();
  }

  /**
   * Sends the request to `replica`, whose in-flight slot the caller has taken. Also used
   * for a retry on another replica: a new attempt, to which the body so far is replayed.
   */
  start(replica: ReplicaRoute): void {
    this.progress++;
    // A flight's leader answers through the flight, which records and relays the response.
    const flight = this.flight;
    const fallbacks = this.addressed.fallbacks;
    const divertable = fallbacks !== null && this.fallbackIndex < fallbacks.length;
    const attempt = this.attempt = new Attempt(this, flight !== null && flight.leader === this ? flight : this, replica, this.probe, divertable);
    if (!attempt.begin() && this.#expectBody && !this.#bodyDone && !this.#drainable) this.#pauseClient();
  }

  /** A held or queued request goes out on a newer route table's route for its deployment. */
  rebind(route: DeploymentRoute): void {
    this.route = route;
  }

  /**
   * The whole body as it would be sent again, once the client has sent it all and it is
   * kept for a replay; null otherwise.
   */
  bodyToReplay(): Buffer | null {
    if (!this.#bodyDone || !this.replayable) return null;
    const parts = [...(this.#sentBody ?? []), ...(this.#heldBody ?? [])];
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** What is sent from now on in place of the body (a fallback's model name spliced in). */
  replaceBody(body: Buffer): void {
    this.#sentBody = [];
    this.#sentBytes = 0;
    this.#heldBody = [body];
  }

  /** A fallback takes the request: its route, and the request head rebuilt for it (its own credential). */
  /** The fallback its own attempts went to (the route it switched to), or null. */
  get servedBy(): string | null {
    return this.route.id === this.addressed.id ? null : this.route.id;
  }

  switchRoute(route: DeploymentRoute, headRest: string): void {
    this.route = route;
    this.#headRest = headRest;
    this.servedByLine = route.servedByLine;
  }

  // AttemptClient
  /** The replica answered 429 or 5xx: a fallback may take the request, if it can be sent again. */
  onErrorHead(status: number): boolean {
    return this.replayable && this.#owner.divert(this, status);
  }

  /**
   * The replica of the try in progress (or the last one); when a try failed before any answer
   * and none followed, the one that failed it (the access line and the span name it); null
   * before dispatch.
   */
  get replica(): ReplicaRoute | null {
    if (this.attempt !== null) return this.attempt.replica;
    const failed = this.#failedOn;
    return failed === null ? null : failed[failed.length - 1]!;
  }

  /** The upstream's response head has arrived (and been passed to the client). */
  get responded(): boolean {
    return this.#responded;
  }

  /** Whether the request could be sent again: no response byte yet, and the body kept. */
  get replayable(): boolean {
    return !this.#responded && (!this.#expectBody || this.#sentBody !== null);
  }

  get uploadDone(): boolean {
    return this.#bodyDone;
  }

  get noResponseBody(): boolean {
    return this.#noResponseBody;
  }

  get bodyless(): boolean {
    return this.#bodyDone && this.#bodyBytes === 0 && this.#heldBody === null;
  }

  requestHead(replica: ReplicaRoute): string {
    const pathQuery = replica.query === '' ? this.#pathQuery : withQuery(this.#pathQuery, replica.query);
    return `${this.method} ${replica.basePath}${pathQuery}${replica.headAfterTarget}${this.#headRest}`;
  }

  takeBodySoFar(): Buffer | null {
    let first: Buffer | null = null;
    // A retry replays what the previous upstream was sent; then what arrived meanwhile.
    const held = this.#sentBody !== null && this.#sentBody.length > 0 ? this.#sentBody.concat(this.#heldBody ?? []) : this.#heldBody;
    if (held !== null) {
      if (this.#heldBody !== null && this.#sentBody !== null) this.#keepForReplay(this.#heldBody);
      first = held.length === 1 ? held[0]! : Buffer.concat(held);
      this.#heldBody = null;
      if (this.#chunkedUpload) first = chunkFrame(first.length > 0 ? first : null, this.#bodyDone);
    } else if (this.#chunkedUpload && this.#bodyDone) {
      first = Buffer.from(LAST_CHUNK);
    }
    return first;
  }

  onAttemptSending(connecting: boolean): void {
    if (this.sentAt < 0) this.sentAt = monoNow();
    this.#setPhase(this.#bodyDone ? (connecting ? Phase.Connecting : Phase.AwaitingHead) : Phase.Uploading);
    if (this.#clientPaused && !this.#bodyDone) this.#resumeClient();
  }

  onRequestSent(): void {
    this.#setPhase(Phase.AwaitingHead);
  }

  pauseUpload(): void {
    this.#pauseClient();
  }

  /** Keeps body chunks for a replay while they stay under the deployment's replay limit. */
  #keepForReplay(chunks: readonly Buffer[]): void {
    for (const c of chunks) {
      this.#sentBytes += c.length;
      if (this.#sentBytes > this.route.policies.retry.replay_max_bytes) {
        this.#sentBody = null;
        return;
      }
      this.#sentBody!.push(c);
    }
  }

  /** A piece of the client's request body (onData: the bytes die on return). */
  onClientData(data: ArrayBuffer | Uint8Array, isLast: boolean): void {
    if (this.#finished) return;
    const bytes = bytesOf(data);
    const n = bytes.length;
    this.#bodyBytes += n;
    if (this.#bodyBytes > this.route.maxBodyBytes) {
      this.route.stats.refused('SLUICE_ERR_BODY_TOO_LARGE');
      this.#fail('SLUICE_ERR_BODY_TOO_LARGE', `request body exceeds ${this.route.maxBodyBytes} bytes (limits.max_body_bytes)`, true);
      return;
    }
    if (isLast) {
      this.#bodyDone = true;
      // Held back while it waited (hold), the upload has come whole anyway (it arrived with
      // the head): nothing is left to hold back, and a paused socket would neither show the
      // client leaving nor, on keep-alive, ever read its next request.
      if (this.#clientPaused) this.#resumeClient();
    }
    const attempt = this.attempt;
    if (attempt !== null && attempt.awaitsFirstPiece && n > 0 && this.#sentBody === null && !this.#chunkedUpload && coalescesWithHead(n)) {
      // The usual small upload: its first piece leaves with the head in one buffer that send
      // fills before the client's bytes die on return, so the piece needs no copy of its own.
      if (!attempt.sendBody(bytes, isLast) && !isLast) this.#pauseClient();
      return;
    }
    let chunk: Buffer | null = null;
    if (n > 0) {
      chunk = Buffer.allocUnsafe(n);
      chunk.set(bytes);
    }
    if (attempt === null || !attempt.connected) {
      if (chunk !== null) (this.#heldBody ??= []).push(chunk);
      const waiter = this.#bodyWaiter;
      if (waiter !== null && (isLast || this.#bodyBytes > this.#bodyWaitLimit)) {
        this.#bodyWaiter = null;
        waiter.onWholeBody(this);
      }
      return;
    }
    if (chunk !== null && this.#sentBody !== null) this.#keepForReplay([chunk]);
    const piece = this.#chunkedUpload ? (chunk !== null || isLast ? chunkFrame(chunk, isLast) : null) : chunk;
    if (!attempt.sendBody(piece, isLast) && !isLast) this.#pauseClient();
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

  /**
   * Runs `fn` (with this exchange as `this`) with the client's output corked, when there
   * still is a client. Upstream reads come through here: one clock reading serves the
   * response head, its end and the replica's breaker (clock.ts).
   */
  corked(fn: (this: Exchange) => void): void {
    holdClock();
    try {
      if (this.#finished || this.#detached) fn.call(this);
      else {
        cork.exchange = this;
        cork.fn = fn;
        this.res.cork(runCorked);
      }
      // A flight's leader: what this upstream read brought goes to the joiners now, in one
      // write each (Flight.flush).
      const flight = this.flight;
      if (flight !== null && flight.leader === this) flight.flush();
    } finally {
      releaseClock();
    }
  }

  /** The upstream's head: the lines kept are copied into the client's head as the bytes they arrived as. */
  onResponseHead(status: number, lines: HeaderLines, contentLength: number): void {
    if (this.#finished) return;
    if (this.#earlyHead) {
      this.#afterEarlyHead(status);
      return;
    }
    if (this.#detached) {
      this.#beginHead(status);
      if (this.tokenCounter !== null) this.#classifyUnsent(lines, contentLength);
      return;
    }
    if (lines.hop !== null) {
      // A head whose Connection header names other headers (rare) goes the string way.
      this.respondHead(status, lines.toArray(), contentLength);
      return;
    }
    this.#beginHead(status);
    const built = lines.clientHead;
    // The upstream's RateLimit-* and Access-Control-* lines give way to the gateway's own (see #endHead).
    const ownRateLimit = this.rateLimit !== null;
    const ownCors = this.browserAtRoot;
    let streamKind = StreamKind.Other;
    let encoding = '';
    if (built !== null && lines.clientOwnRateLimit === ownRateLimit && lines.clientOwnCors === ownCors) {
      // The same upstream head as the last one on this connection: the same client head.
      headStartWith(built);
      streamKind = lines.clientKind as StreamKind;
      encoding = lines.clientEncoding;
    } else {
      headStart(status);
      // Only a body without a length has a stream format to keep (see #kind).
      const classify = contentLength < 0;
      let reusable = true;
      for (let i = 0; i < lines.count; i++) {
        const kind = lines.kind(i);
        if (kind === HeaderKind.RequestId) {
          // Each answer's own: the head is not reused.
          reusable = false;
          this.#upstreamRequestIdLine(lines.value(i));
          continue;
        }
        if (isDroppedResponseKind(kind)) continue;
        if (classify && kind === HeaderKind.ContentType && streamKind === StreamKind.Other) streamKind = streamKindOf(lines.value(i));
        if (kind === HeaderKind.RateLimit && ownRateLimit) continue;
        if (kind === HeaderKind.AccessControl && ownCors) continue;
        if (kind === HeaderKind.ContentEncoding) encoding = lines.value(i);
        if (kind === HeaderKind.Location) {
          // Rewritten for this request's route prefix: the head is not reused.
          reusable = false;
          const location = this.#clientLocation(lines.value(i));
          if (location !== null) {
            headField(lines.name(i), location);
            continue;
          }
        }
        headLine(lines, i);
      }
      // Kept only once the head has come round again, so that heads which differ each time
      // (a length that varies) cost no copy.
      if (lines.repeated && reusable) {
        lines.clientHead = headCopy();
        lines.clientKind = streamKind;
        lines.clientOwnRateLimit = ownRateLimit;
        lines.clientOwnCors = ownCors;
        lines.clientEncoding = encoding;
      }
    }
    if (encoding !== '') this.#codedAs(encoding);
    if (this.#kind === StreamKind.Other) this.#kind = streamKind;
    this.#endHead(status, contentLength);
  }

  /** A head as `[name, value, ...]` strings: from the cache, a flight's leader, or the upstream when it is to be kept. */
  respondHead(status: number, headers: readonly string[], contentLength: number): void {
    if (this.#finished) return;
    if (this.#earlyHead) {
      this.#afterEarlyHead(status);
      return;
    }
    this.#beginHead(status);
    // Headers the upstream named in its Connection header are hop-by-hop too (RFC 9110 7.6.1).
    let hop: string[] | null = null;
    for (let i = 0; i < headers.length; i += 2) {
      if (sameName(headers[i]!, 'connection')) {
        const tokens = connectionTokens(headers[i + 1]!);
        if (tokens !== null) hop = hop === null ? tokens : hop.concat(tokens);
      }
    }
    headStart(status);
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const kind = kindOfName(name);
      if (kind === HeaderKind.RequestId) {
        this.#upstreamRequestIdLine(headers[i + 1]!);
        continue;
      }
      if (isDroppedResponseKind(kind)) continue;
      if (hop !== null && hop.includes(name.toLowerCase())) continue;
      if (kind === HeaderKind.RateLimit && this.rateLimit !== null) continue;
      if (kind === HeaderKind.AccessControl && this.browserAtRoot) continue;
      const value = headers[i + 1]!;
      if (contentLength < 0 && kind === HeaderKind.ContentType && this.#kind === StreamKind.Other) this.#kind = streamKindOf(value);
      if (kind === HeaderKind.ContentEncoding) this.#codedAs(value);
      headField(name, kind === HeaderKind.Location ? this.#clientLocation(value) ?? value : value);
    }
    this.#endHead(status, contentLength);
  }

  /** The server's x-request-id, as the client's x-upstream-request-id (a cache hit's is its first answer's, not logged). */
  #upstreamRequestIdLine(value: string): void {
    if (this.cacheStatus !== 'hit') this.upstreamRequestId = value;
    headField('x-upstream-request-id', value);
  }

  /**
   * A detached leader's answer goes to its joiners only, yet its tokens are counted here (a
   * joiner counts none): how its body is to be read, a stream or not, compressed or not.
   */
  #classifyUnsent(lines: HeaderLines, contentLength: number): void {
    for (let i = 0; i < lines.count; i++) {
      const kind = lines.kind(i);
      if (contentLength < 0 && kind === HeaderKind.ContentType && this.#kind === StreamKind.Other) this.#kind = streamKindOf(lines.value(i));
      else if (kind === HeaderKind.ContentEncoding) this.#codedAs(lines.value(i));
    }
  }

  /** The response's Content-Encoding (rare: most model servers do not compress). */
  #codedAs(value: string): void {
    const coding = contentCoding(value);
    if (coding === null) return;
    this.#encoded = true;
    this.tokenCounter?.encodedAs(coding);
  }

  /** Where the client is sent for the upstream's Location `value`; null: as sent (redirect-location.ts). */
  #clientLocation(value: string): string | null {
    const path = this.path;
    const rest = this.upstreamPath;
    // The route's part of the client's path: what the gateway took off before the replica's path.
    const prefix = path === rest ? '' : path.endsWith(rest) ? path.slice(0, path.length - rest.length) : path;
    return clientLocation(value, this.route.replicas, prefix);
  }

  /**
   * Held for a while (policies.hold.heartbeat_ms): an OpenAI-style streaming request gets
   * its 200 head and a `: waking` SSE comment now, and one more every `everyMs`, so that
   * proxies and SDKs with an idle timeout keep waiting. Its body was read while held (a
   * small one only: see Gateway.#hold) to know it streams.
   */
  heartbeat(now: number, everyMs: number): void {
    if (this.#finished || this.#detached) return;
    if (this.#earlyHead) {
      if (now - this.#lastBeat < everyMs) return;
      this.#lastBeat = now;
      this.responseBytes += WAKING.length;
      const res = this.res;
      res.cork(() => res.write(WAKING));
      return;
    }
    if (now - this.phaseSince < everyMs || !this.#streamsEvents()) return;
    this.#earlyHead = true;
    // The client is told the answer is a plain event stream: the server must not compress it
    // (a gzip answer would reach an SDK as bytes it cannot decode).
    this.#headRest = IDENTITY_LINE + withoutHeaders(this.#headRest, ACCEPT_ENCODING);
    this.#lastBeat = now;
    this.responseBytes += WAKING.length;
    this.#responded = true;
    this.status = 200;
    this.#mode = BodyMode.Chunked;
    this.#kind = StreamKind.Sse;
    const res = this.res;
    res.cork(() => {
      res.writeStatus(statusLine(200)).writeHeader('content-type', 'text/event-stream').writeHeader('cache-control', 'no-cache')
        .writeHeader('x-request-id', this.requestId).writeHeader('x-sluice-cache', this.cacheStatus);
      if (this.versionLine !== null) res.writeHeader('x-sluice-version', this.route.version);
      if (this.corsOrigin !== null) for (const [k, v] of corsHeaders(this.corsOrigin)) res.writeHeader(k, v);
      res.write(WAKING);
    });
  }

  /** An OpenAI-style request (`/v1/...`) whose whole body says `"stream": true`. */
  #streamsEvents(): boolean {
    if (!this.#bodyDone || this.#heldBody === null || this.flight !== null || !this.path.includes('/v1/')) return false;
    for (const chunk of this.#heldBody) if (STREAM_TRUE.test(chunk.toString('latin1'))) return true;
    return false;
  }

  /** The upstream answered a request whose head went early: its body joins the stream; an error ends it. */
  #afterEarlyHead(status: number): void {
    this.#earlyHead = false;
    this.#beginHead(status);
    // Its body says why (a prompt too long, a bad parameter): read, then told in the error event.
    if (status !== 200) this.#lateError = [];
  }

  #lateErrorBytes(): number {
    let n = 0;
    for (const b of this.#lateError!) n += b.length;
    return n;
  }

  /** The error status's body has come (or enough of it): the stream ends with an error event that quotes its message. */
  #endLateError(): void {
    const said = serverMessage(Buffer.concat(this.#lateError!));
    this.#lateError = null;
    this.#fail('SLUICE_ERR_UPSTREAM_STATUS', `the model server answered ${this.status} after the stream had started${said === '' ? '' : `: ${said}`}`, false);
  }

  #beginHead(status: number): void {
    this.status = status;
    this.#responded = true;
    this.#setPhase(Phase.Streaming);
    if (this.cacheStatus === 'miss' || this.cacheStatus === 'coalesced') this.addressed.stats.cacheMisses++;
    const attempt = this.attempt;
    if (attempt !== null) {
      const now = monoNow();
      this.headAt = now;
      const route = this.route;
      route.stats.recordTtfb((now - this.startedAt) / 1000);
      if (route.learnsLatency) route.balancer.observe!(attempt.replica, now - this.startedAt, wallNow());
    }
  }

  /** The gateway's own headers, then the head to uWS in one call; sets how the body is framed. */
  #endHead(status: number, contentLength: number): void {
    // The gateway's own lines go in as bytes: no string is made for them per response.
    headBytes(REQUEST_ID_LINE);
    headText(this.requestId);
    const cache = this.cacheStatus;
    headBytes(cache === 'hit' ? CACHE_HIT_LINE : cache === 'miss' ? CACHE_MISS_LINE : cache === 'coalesced' ? CACHE_COALESCED_LINE : CACHE_BYPASS_LINE);
    if (this.versionLine !== null) headBytes(this.versionLine);
    if (this.servedByLine !== null) headBytes(this.servedByLine);
    if (this.corsOrigin !== null) headText(corsLines(this.corsOrigin));
    const rl = this.rateLimit;
    if (rl !== null) {
      headBytes(rateLimitLimitLine(rl.limit));
      headBytes(RATELIMIT_REMAINING_LINE);
      headUint(rl.remaining);
      headBytes(RATELIMIT_RESET_LINE);
      headUint(Math.ceil(rl.resetMs / 1000));
    }
    this.res.writeStatus(headView());
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
    this.progress++;
    if (this.#lateError !== null) {
      // Copied: the upstream's read buffer is reused.
      if (this.#lateErrorBytes() < LATE_ERROR_BYTES) this.#lateError.push(Buffer.from(chunk.subarray(0, LATE_ERROR_BYTES)));
      return true;
    }
    if (this.#detached) {
      // Its flight has recorded and relayed the chunk: done once the whole body has come. The
      // upstream call is still this request's: its tokens are counted (and charged) here.
      this.tokenCounter?.observe(chunk, this.#kind !== StreamKind.Other);
      if (this.flight!.settled) this.#detachedComplete();
      return true;
    }
    if (this.#behind >= 0) this.#behind += chunk.length;
    this.route.stats.bytesOut += chunk.length;
    if (this.firstByteAt < 0) this.#firstByte();
    this.responseBytes += chunk.length;
    this.tokenCounter?.observe(chunk, this.#kind !== StreamKind.Other);
    if (this.#mode === BodyMode.Chunked) {
      if (this.#kind !== StreamKind.Other && !this.#encoded) {
        if (this.#heldLine !== null || !endsLine(chunk)) return this.#writeWholeLines(chunk);
        this.#lastTwo = lastTwoBytes(chunk, this.#lastTwo);
      }
      if (this.res.write(chunk)) return true;
      this.#hookWritable();
      return false;
    }
    // Held chunks are copied: the parser's chunk is a view of the shared socket read buffer.
    if (this.#pending !== null) {
      this.#pending.push(Buffer.from(chunk));
      return false;
    }
    if (this.#written === 0 && chunk.length === this.#total) {
      // The whole body in one piece (the usual small answer): end() takes it all, buffering
      // what the socket cannot, and allocates no [ok, done] pair.
      this.res.end(chunk);
      this.#clientComplete();
      return true;
    }
    const [ok, done] = this.res.tryEnd(chunk, this.#total);
    if (done) {
      this.#clientComplete();
      return true;
    }
    if (ok) {
      // Every earlier chunk went out whole, so this is uWS's write offset before the next
      // one (saves a getWriteOffset call per chunk).
      this.#written += chunk.length;
      return true;
    }
    this.#pending = [Buffer.from(chunk)];
    this.#pendingOffset = this.#written;
    this.#hookWritable();
    return false;
  }

  /**
   * A stream goes out in whole lines: the upstream's writes (or TCP) may cut a line
   * anywhere, and a failure's error event (or line) written after half a line would be
   * glued to it, which SDKs cannot parse. Servers flush whole events as a rule, so the
   * usual chunk never comes here. A line longer than MAX_HELD_LINE goes out as it comes
   * (held, it would grow without bound).
   */
  #writeWholeLines(chunk: Buffer): boolean {
    const end = Math.max(chunk.lastIndexOf(0x0a), chunk.lastIndexOf(0x0d)) + 1;
    const held = this.#heldLine;
    if (end === 0 && (held === null || this.#heldBytes + chunk.length <= MAX_HELD_LINE)) {
      // Copied: the chunk is a view of the socket's read buffer.
      if (held === null) this.#heldLine = [Buffer.from(chunk)];
      else held.push(Buffer.from(chunk));
      this.#heldBytes += chunk.length;
      return true;
    }
    const out = end === 0 ? chunk : chunk.subarray(0, end);
    this.#heldLine = end === 0 || end === chunk.length ? null : [Buffer.from(chunk.subarray(end))];
    this.#heldBytes = end === 0 ? 0 : chunk.length - end;
    this.#lastTwo = lastTwoBytes(out, held === null ? this.#lastTwo : 0);
    if (this.res.write(held === null ? out : Buffer.concat([...held, out]))) return true;
    this.#hookWritable();
    return false;
  }

  #hookWritable(): void {
    if (this.#behind < 0) this.#behind = 0;
    if (!this.#writableHooked) {
      this.#writableHooked = true;
      this.res.onWritable((offset) => this.#onWritable(offset));
    }
  }

  #onWritable(offset: number): boolean {
    if (this.#finished) return true;
    // A slow client is not a stalled upstream: the idle timer restarts when the client drains.
    this.progress++;
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
      this.#written = this.#pendingOffset;
    }
    this.#behind = -1;
    if (this.#upstreamEnded) {
      this.#endClient();
      return true;
    }
    if (this.#replay !== null) {
      this.replayCached();
      return true;
    }
    // A flight's member (its leader or a joiner) resumes the shared upstream, which waits
    // only while every member is slow.
    const flight = this.flight;
    if (flight !== null) {
      if (this.catchUp >= 0) flight.continueCatchUp(this);
      else flight.resume();
    } else this.attempt?.resume();
    return true;
  }

  /** `replica` failed this request before answering: a retry does not go back to it. */
  failed(replica: ReplicaRoute): void {
    (this.#failedOn ??= []).push(replica);
  }

  failedOn(replica: ReplicaRoute): boolean {
    return this.#failedOn !== null && this.#failedOn.includes(replica);
  }

  /** Body bytes handed to the client since it fell behind (-1: it keeps up). */
  get behind(): number {
    return this.#behind;
  }

  /**
   * The gateway's writes to the client waited for the idle timeout while the upstream was
   * paused for it (#onWritable never came): the client's fault, not the replica's, which
   * sent all it was asked for (SLUICE_ERR_CLIENT_TOO_SLOW never counts against its breaker).
   * Its connection is cut; a flight's leader is detached as by cut().
   */
  clientStalled(): void {
    if (this.#finished || this.#detached) return;
    const flight = this.flight;
    if (flight !== null && flight.leader === this && flight.joinerCount > 0) {
      this.cut();
      return;
    }
    this.errorCode = 'SLUICE_ERR_CLIENT_TOO_SLOW';
    this.#abortUpstream();
    // Finished first, so that the abort close() reports is not counted as the client's.
    this.#finish(this.status);
    this.res.close();
  }

  /**
   * `behind` passed `limit`: whether the client's backlog really does, where the front end
   * can tell what its socket still holds. Both bound the backlog from above: `behind` counts
   * every byte handed over since the client fell behind (what it has read since included),
   * the socket's count holds a late joiner's catch-up too (not counted: Flight.join); the
   * smaller is kept, and `behind` counts on from it. Called only past the limit, not per chunk.
   */
  stillBehind(limit: number): boolean {
    const res = this.res;
    if (res.bufferedAmount === undefined) return true;
    let n = res.bufferedAmount();
    const pending = this.#pending;
    if (pending !== null) for (let i = 0; i < pending.length; i++) n += pending[i]!.length;
    if (n < this.#behind) this.#behind = n;
    return this.#behind > limit;
  }

  /** The flight's catch-up of a late joiner is not counted as falling behind (Flight.join). */
  caughtUp(): void {
    if (this.#behind > 0) this.#behind = 0;
  }

  /** The upstream may send again (a flight's leader: its attempt is the flight's upstream). */
  resumeUpstream(): void {
    this.attempt?.resume();
  }

  /**
   * A flight's member whose client fell more than MAX_BEHIND_BYTES behind the others: its
   * connection is closed (the bytes held for it go with it) and it leaves the flight. A
   * leader is detached instead, as when its client leaves: the upstream goes on for the
   * joiners. Logged with SLUICE_ERR_CLIENT_TOO_SLOW.
   */
  cut(): void {
    if (this.#finished || this.#detached) return;
    this.route.stats.coalescedCuts++;
    this.errorCode = 'SLUICE_ERR_CLIENT_TOO_SLOW';
    const res = this.res;
    const flight = this.flight;
    if (flight !== null && flight.leader === this) {
      // Detached first: the abort that close() reports finds it so (onClientAborted).
      this.#detached = true;
      this.#pending = null;
      this.#heldLine = null;
      res.close();
      return;
    }
    // Finished first, so that the abort close() reports is not counted as the client's.
    this.#finish(this.status);
    res.close();
  }

  #firstByte(): void {
    const now = monoNow();
    this.firstByteAt = now;
    if (this.status >= 200 && this.status < 300) this.route.stats.recordTtft((now - this.startedAt) / 1000);
  }

  /** The response is a token stream (SSE or NDJSON), not one JSON answer. */
  get streamed(): boolean {
    return this.#kind !== StreamKind.Other;
  }

  /**
   * The tokens a replica's answer carried, or null: none for a cache hit, a coalesced
   * follower or a refusal (no model worked for them), nor for a whole answer without usage
   * (an MLflow prediction, a model list: not an LLM's). The token metrics, the charge and
   * the token limits all count this.
   */
  get answerTokens(): TokenCounter | null {
    const counter = this.tokenCounter;
    return counter !== null && this.attempt !== null && this.headAt >= 0 && (this.streamed || counter.reported) ? counter : null;
  }

  onResponseEnd(): void {
    this.#upstreamEnded = true;
    this.upstreamEndAt = monoNow();
    if (this.#finished) return;
    if (this.#lateError !== null) {
      this.#endLateError();
      return;
    }
    if (this.#detached) {
      this.#detachedComplete();
      return;
    }
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
        // The upstream ended whole: its last line goes out even without a line end.
        if (this.#heldLine !== null) res.write(Buffer.concat(this.#heldLine));
        res.end();
        break;
    }
    this.#clientComplete();
  }

  #clientComplete(): void {
    if (!this.#finished) this.#finish(this.status);
  }

  /**
   * The answer a detached leader's upstream call made for its joiners is whole. Its own
   * client had left (499), or was cut for falling behind (the head's status, with the
   * error code cut() set, as for a cut joiner).
   */
  #detachedComplete(): void {
    if (!this.#finished) this.#finish(this.errorCode === null ? 499 : this.status);
  }

  onAttemptError(code: ErrorCode, detail: string, answered: boolean): void {
    if (this.#finished) return;
    this.route.stats.upstreamError(code);
    // Refused, never connected, or reset before any response byte: safe to send to another replica.
    if ((code === 'SLUICE_ERR_UPSTREAM_CONNECT' || code === 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT' || code === 'SLUICE_ERR_UPSTREAM_RESET') && !answered && this.replayable) {
      if (this.#owner.retryElsewhere(this, code)) return;
      // No replica of its own left to try: a fallback may take it (retryElsewhere let the attempt go).
      if (this.addressed.fallbacks !== null && this.#owner.fallBack(this, ERRORS[code].status)) return;
    }
    this.#fail(code, detail, false);
  }

  /** The client went away (uWS onAborted): stop the upstream generation at once. */
  onClientAborted(): void {
    // Detached: this client already left (or was cut) and the upstream goes on for joiners.
    if (this.#finished || this.#detached) return;
    this.route.stats.clientAborts++;
    const flight = this.flight;
    if (flight !== null && flight.leader === this && flight.joinerCount > 0) {
      // Others wait on this upstream response: it goes on for them, without this client,
      // and unpaused, as nobody will drain this client's socket any more.
      this.#detached = true;
      this.#pending = null;
      this.attempt?.resume();
      return;
    }
    this.#abortUpstream();
    this.#finish(499);
  }

  /** The client's body broke its framing: the upstream gets no more of it, the client a 400 (or a cut, once answered). */
  onClientMalformed(status: number, message: string): void {
    if (this.#finished || this.#detached) return;
    const code = malformedRequestCode(status);
    this.route.stats.refused(code);
    this.#fail(code, message, true);
  }

  /** The detached leader's last joiner left: now nobody wants the upstream response. */
  abandon(): void {
    if (this.#finished) return;
    this.#abortUpstream();
    this.#finish(499);
  }

  get detached(): boolean {
    return this.#detached;
  }

  /** A paused filter's request goes on: the filters after it, then the balancer. */
  resume(): void {
    this.#owner.continueRequest(this);
  }

  /**
   * A request whose whole body is needed before it goes on (a cache candidate's key, a
   * fallback's model name): true when its body is still arriving (`waiter.onWholeBody`
   * follows, once it is whole or has outgrown `maxBytes`), false when it can go on now.
   */
  awaitBody(waiter: BodyWaiter, maxBytes: number): boolean {
    if (this.#bodyDone || this.#bodyBytes > maxBytes) return false;
    this.#bodyWaiter = waiter;
    this.#bodyWaitLimit = maxBytes;
    this.#setPhase(Phase.Uploading);
    // Held back during admission; the body must now come in.
    if (this.#clientPaused) this.#resumeClient();
    return true;
  }

  /** The whole request body, once read (cache candidates only); kept for the upstream. */
  wholeBody(): Buffer | null {
    if (!this.#bodyDone) return null;
    const held = this.#heldBody;
    if (held === null) return Buffer.alloc(0);
    if (held.length === 1) return held[0]!;
    const body = Buffer.concat(held);
    this.#heldBody = [body];
    return body;
  }

  get pathQuery(): string {
    return this.#pathQuery;
  }

  /** Answers from the cache in the framing the response was received in, chunk by chunk. */
  serveCached(entry: CachedResponse): void {
    this.cacheStatus = 'hit';
    // A fallback's answer, stored under this deployment's key: the hit says who made it.
    const by = servedByOf(entry.headers);
    if (by !== null) this.servedByLine = Buffer.from(`\r\nx-sluice-served-by: ${by}`, 'latin1');
    this.#replay = entry;
    this.#replayAt = 0;
    cork.entry = entry;
    this.corked(serveCachedCorked);
  }

  /**
   * Writes the cached entry's next chunks, at the client's pace: a write that finds its
   * socket still full stops the replay until it drains (#onWritable); past REPLAY_SLICE_BYTES
   * in one turn, the next turn goes on.
   */
  replayCached(): void {
    const e = this.#replay;
    if (e === null) return;
    const chunks = e.chunks;
    let budget = REPLAY_SLICE_BYTES;
    while (this.#replayAt < chunks.length) {
      if (this.#finished) {
        this.#replay = null;
        return;
      }
      const c = chunks[this.#replayAt++]!;
      if (!this.onResponseData(c)) return;
      budget -= c.length;
      if (budget <= 0 && this.#replayAt < chunks.length) {
        setImmediate(replayLater, this);
        return;
      }
    }
    this.#replay = null;
    this.onResponseEnd();
  }

  // A joiner's share of its flight's response.
  relayHead(status: number, headers: readonly string[], contentLength: number): void {
    if (this.#finished) return;
    // A fallback took the leader's request: it answered the joiners' too.
    this.servedByLine = this.flight!.leader.servedByLine;
    cork.status = status;
    cork.headers = headers;
    cork.length = contentLength;
    this.corked(relayHeadCorked);
  }

  relayData(chunk: Buffer): void {
    if (this.#finished) return;
    cork.chunk = chunk;
    this.corked(relayDataCorked);
  }

  relayEnd(): void {
    if (this.#finished) return;
    this.corked(relayEndCorked);
  }

  relayFail(code: ErrorCode, message: string, headers?: ReadonlyArray<readonly [string, string]>): void {
    if (this.#finished) return;
    if (this.#responded) this.#fail(code, message, false);
    else this.reject(code, message, headers);
  }

  /**
   * The gateway is stopping and its grace is over: the request ends as a gateway failure
   * with `code` (a JSON error, or a stream's error event or line), not as if its client
   * had left, which is how closing the connections would have it logged.
   */
  shutDown(code: ErrorCode): void {
    if (this.#finished) return;
    this.#abortUpstream();
    this.corked(() => this.relayFail(code, ERRORS[code].message, RETRY_AFTER));
  }

  /** Called by the gateway's timeout sweep. */
  /** No connection to the replica within connect_timeout_ms: nothing reached it, so, as after a refused connect, another replica or a fallback may take the request. */
  connectTimedOut(): void {
    if (this.#finished) return;
    this.#abortUpstream();
    this.corked(() => this.onAttemptError('SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT', ERRORS.SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT.message, false));
  }

  timeout(code: ErrorCode): void {
    if (this.#finished) return;
    this.route.stats.upstreamError(code);
    this.#abortUpstream();
    this.corked(() => this.#fail(code, ERRORS[code].message, false));
  }

  /** Refused before any upstream was contacted (rate limit, queue, breakers): a JSON error. */
  reject(code: ErrorCode, message: string, headers?: ReadonlyArray<readonly [string, string]>): void {
    if (this.#finished) return;
    // Held with its head already sent (heartbeat): the stream ends with an error event.
    if (this.#earlyHead) {
      this.#earlyHead = false;
      this.#fail(code, message, false);
      return;
    }
    if (this.flight?.leader === this) this.flight.fail(code, message, headers);
    this.errorCode = code;
    this.route.stats.refused(code);
    // The gateway's own answer, not a replica's: neither a hit nor a miss.
    this.cacheStatus = 'bypass';
    const status = ERRORS[code].status;
    if (this.#detached) {
      this.#finish(status);
      return;
    }
    // The rest of a small body is read and dropped (#finished) so the connection can serve
    // the client's next request; a large one is not read: the connection closes.
    const close = !this.#bodyDone && !this.#drainable;
    if (!close && this.#clientPaused) this.#resumeClient();
    this.responseBytes = writeJsonResponse(this.res, status, this.#errorBody(code, message), this.requestId, close, this.#errorHeaders(headers), this.#noResponseBody, this.cacheStatus);
    this.#finish(status);
  }

  #errorBody(code: ErrorCode, message: string): string {
    return this.ollamaErrors ? ollamaErrorBody(message, this.requestId) : errorBody(code, message, this.requestId);
  }

  /** An error's extra headers, with the version the alias chose and an allowed browser origin's (error paths only: it allocates). */
  #errorHeaders(headers: ReadonlyArray<readonly [string, string]> | undefined): ReadonlyArray<readonly [string, string]> | undefined {
    if (this.corsOrigin !== null) headers = headers === undefined ? corsHeaders(this.corsOrigin) : [...headers, ...corsHeaders(this.corsOrigin)];
    if (this.versionLine === null) return headers;
    const line: readonly [string, string] = ['x-sluice-version', this.route.version];
    return headers === undefined ? [line] : [...headers, line];
  }

  #abortUpstream(): void {
    this.attempt?.abort();
  }

  /**
   * Ends the exchange with a gateway error: a JSON error if the client has seen nothing yet;
   * after the response has started, a clean end with an error event for SSE / NDJSON
   * streams, or a cut connection so the client cannot mistake a truncated body for a whole.
   */
  #fail(code: ErrorCode, message: string, closeClient: boolean): void {
    this.#abortUpstream();
    this.errorCode = code;
    if (this.flight?.leader === this) this.flight.fail(code, message);
    if (this.#detached) {
      this.#finish(this.#responded ? this.status : ERRORS[code].status);
      return;
    }
    const res = this.res;
    if (!this.#responded) {
      const status = ERRORS[code].status;
      this.cacheStatus = 'bypass';
      this.responseBytes = writeJsonResponse(res, status, this.#errorBody(code, message), this.requestId, closeClient, this.#errorHeaders(code === 'SLUICE_ERR_TOTAL_TIMEOUT' ? NO_RETRY : undefined), this.#noResponseBody, this.cacheStatus);
      this.#finish(status);
      return;
    }
    // A 5xx head counts as an error already.
    if (this.status < 500) this.route.stats.failedAfterHead++;
    const mode = this.#mode;
    // A compressed stream cannot take an event of the gateway's: it is cut as any other body.
    const kind = this.#encoded ? StreamKind.Other : this.#kind;
    const body = kind === StreamKind.Sse && this.upstreamPath === RESPONSES_PATH ? responsesErrorEvent(code, message, this.requestId) : this.#errorBody(code, message);
    // Errors also arrive from socket events, outside any uWS callback: cork the writes.
    res.cork(() => {
      // What went out ends in a line end (#writeWholeLines); a blank line first ends the
      // event it may be in (after CRLF lines one too many, which dispatches nothing).
      if (mode === BodyMode.Chunked && kind === StreamKind.Sse) {
        const ended = this.#lastTwo === LF_LF || this.#lastTwo === CR_CR || this.#lastTwo === 0;
        this.#endStream(`${ended ? '' : '\n'}event: error\ndata: ${body}\n\n`);
      } else if (mode === BodyMode.Chunked && kind === StreamKind.Ndjson) {
        this.#endStream(`${body}\n`);
      } else if (this.firstByteAt < 0 && mode !== BodyMode.None) {
        // No body byte came: the front end holds the head without its framing line, which
        // goes out with the first piece. Sent now, so that the cut below reads as a
        // truncated answer: a head without a length ended by a close is a whole, empty
        // body to curl or Python's urllib.
        if (mode === BodyMode.Length) res.tryEnd(NO_BYTES, this.#total);
        else res.write(NO_BYTES);
      }
    });
    const cut = mode !== BodyMode.Chunked || kind === StreamKind.Other;
    // Finished before the connection is cut: close() reports an abort at once, which must
    // not finish the exchange a second time (a second in-flight release, a 499 counted).
    this.#finish(this.status);
    if (cut) res.close();
  }

  /**
   * A failed stream's last event or line. response_bytes counts what the client got: that,
   * and not the line held for its end (#writeWholeLines), which is dropped.
   */
  #endStream(last: string): void {
    this.responseBytes += Buffer.byteLength(last) - this.#heldBytes;
    this.#heldLine = null;
    this.#heldBytes = 0;
    this.res.write(last);
    this.res.end();
  }

  #setPhase(phase: Phase): void {
    this.phase = phase;
    this.progress++;
  }

  #finish(status: number): void {
    this.#finished = true;
    this.phase = Phase.Done;
    this.status = status;
    this.#pending = null;
    const flight = this.flight;
    if (flight !== null) {
      this.flight = null;
      flight.leave(this);
    }
    this.#owner.onExchangeDone(this);
  }

  /** Waiting for a pooled connection or for TCP connect: the connect timeout applies. */
  /** Its attempt waits for one of the pool's connections (all in use: upstream.max_connections). */
  get awaitingConnection(): boolean {
    return this.attempt !== null && this.attempt.awaitingConnection;
  }

  get upstreamConnecting(): boolean {
    return this.attempt !== null && this.attempt.connecting;
  }

  get bodyBytes(): number {
    return this.#bodyBytes;
  }
}

type BucketRefLike = import('../policy/index.js').BucketRef;

/** The client's head as read, kept for a fallback's request head (see Gateway.#headRestFor). */
export interface FallbackHead {
  readonly head: ClientHead;
  /** The lines after the client's (forwarding, request id: the addressed deployment's form of it); the framing line follows. */
  readonly tail: string;
}

// The gateway's own header lines, each led by CRLF as headLine's lines are.
const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const CRLF = latin1('\r\n');
const COLON_SPACE = latin1(': ');

/** Appends `\r\n<name>: <value>` to the head being built. */
function headField(name: string, value: string): void {
  headBytes(CRLF);
  headText(name);
  headBytes(COLON_SPACE);
  headText(value);
}
const REQUEST_ID_LINE = latin1('\r\nx-request-id: ');
const CACHE_HIT_LINE = latin1('\r\nx-sluice-cache: hit');
const CACHE_MISS_LINE = latin1('\r\nx-sluice-cache: miss');
const CACHE_COALESCED_LINE = latin1('\r\nx-sluice-cache: coalesced');
const CACHE_BYPASS_LINE = latin1('\r\nx-sluice-cache: bypass');
const RATELIMIT_REMAINING_LINE = latin1('\r\nratelimit-remaining: ');
const RATELIMIT_RESET_LINE = latin1('\r\nratelimit-reset: ');

// A deployment's limit rarely changes between responses: its line is encoded once.
let limitLineOf = -1;
let limitLine = latin1('');

/** "RateLimit-Limit: <limit>" as bytes. */
function rateLimitLimitLine(limit: number): Buffer {
  if (limit !== limitLineOf) {
    limitLineOf = limit;
    limitLine = latin1(`\r\nratelimit-limit: ${limit}`);
  }
  return limitLine;
}

function streamKindOf(contentType: string): StreamKind {
  // Most answers are JSON or text/plain: decided by the first letters, without lower-casing.
  const c0 = contentType.charCodeAt(0) | 0x20;
  if (c0 !== 0x74 && c0 !== 0x61) return StreamKind.Other; // neither 't' nor 'a'
  if (startsWithName(contentType, 'application/json') && (contentType.length === 16 || contentType.charCodeAt(16) === 0x3b || contentType.charCodeAt(16) === 0x20)) return StreamKind.Other;
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
