// Request coalescing: identical cache candidates in flight at the same time share one
// upstream call. The first one (the leader) is a normal Exchange talking to a replica, but
// its attempt's response goes through the Flight, a fan-out sink in front of the leader
// (undici's deduplication handler): each event is recorded and relayed to the others
// (joiners), which never contact an upstream, then passed to the leader as it came. A late
// joiner first gets the head and chunks so far, then the live ones. The recording is also
// what the cache stores when the response completes.
// A flight goes at the pace of its fastest member, not its slowest: the upstream is paused
// only while every member (the leader's client and each joiner's) is slow, and resumes when
// any of them drains. A member whose client falls more than MAX_BEHIND_BYTES behind what was
// handed to it (counted from the moment a write found it slow, until its socket drains) is
// cut: its connection is closed and it leaves the flight; a cut leader is detached, as when
// its client leaves, and the upstream goes on for the joiners. So one client that stops
// reading neither stalls the others nor makes the gateway hold the whole answer for it. A
// leader alone (no joiners) keeps a plain request's backpressure: the upstream waits for its
// client, however slow, and it is never cut.
// With a shared tier (Redis), a flight starts by looking there: requests arriving meanwhile
// join it too, so one lookup, then at most one upstream call, serves them all.

import { Buffer } from 'node:buffer';
import type { CacheConfig } from '../config/index.js';
import type { ErrorCode } from '../errors/index.js';
import { decodeEntry, encodeEntry, ResponseCache, SHARED_CACHE_PREFIX, storableForMs, storedHeaders, streamEndsInError, type CachedResponse, type RedisCache } from '../policy/index.js';
import type { RequestStats } from '../telemetry/index.js';
import type { HeaderLines } from './upstream/index.js';
import { wallNow } from './clock.js';

/**
 * How far a member's client may fall behind (body bytes handed to it since a write found it
 * slow, until its socket drains) before it is cut. A bound per member: with the socket's own
 * buffer, what the gateway holds for a client that stops reading; a late joiner's catch-up
 * is not counted (it goes at the joiner's pace: Flight.continueCatchUp).
 */
export const MAX_BEHIND_BYTES = 8 * 1024 * 1024;

/** Cuts `m` once its client is more than MAX_BEHIND_BYTES behind: the cheap count first, the socket's own only past it. */
function cutIfTooFarBehind(m: FlightMember): void {
  if (m.behind > MAX_BEHIND_BYTES && m.stillBehind(MAX_BEHIND_BYTES)) m.cut();
}

/**
 * A late joiner's catch-up goes out in writes of about this size, as long as its client takes
 * them (Flight.continueCatchUp). Written all at once, every late joiner that did not read held
 * a copy of the recording (up to max_entry_bytes): 100 of them, 3.3 MB into a stream, held
 * 370 MB.
 */
const CATCH_UP_WRITE_BYTES = 256 * 1024;

function catchUpLater(flight: Flight, ex: FlightMember): void {
  flight.continueCatchUp(ex, true);
}

/** An exchange as its flight sees it (the leader and the joiners). */
export interface FlightMember {
  flight: Flight | null;
  /** The leader's client left (or was cut) while joiners still wait for the upstream response. */
  readonly detached: boolean;
  /** Body bytes handed to its client since a write found it slow; -1 while it keeps up. */
  readonly behind: number;
  /** `behind` passed `limit`: whether its client's backlog really does (see Exchange.stillBehind). */
  stillBehind(limit: number): boolean;
  /** Fell more than MAX_BEHIND_BYTES behind: closes its connection and leaves (a leader detaches). */
  cut(): void;
  /** What it got so far is a catch-up: `behind` counts from here. */
  caughtUp(): void;
  /** The leader: its attempt (the flight's upstream) may send again. */
  resumeUpstream(): void;
  /** A late joiner: the index of the next recorded chunk its catch-up writes; -1 once it gets the live ones. */
  catchUp: number;
  /**
   * The body bytes its catch-up has written, plus what was recorded when it joined: how far
   * behind the recording's end it may be before it is cut is MAX_BEHIND_BYTES beyond that
   * (the catch-up is not counted, as when it was written at once).
   */
  catchUpBytes: number;
  serveCached(entry: CachedResponse): void;
  relayHead(status: number, headers: readonly string[], contentLength: number): void;
  /** `x-sluice-served-by` when a fallback took the request (the leader's: its joiners' answers say it too). */
  readonly servedByLine: Uint8Array | null;
  /** The id of the fallback that took the request, or null (what a stored answer remembers). */
  readonly servedBy: string | null;
  relayData(chunk: Buffer): void;
  relayEnd(): void;
  relayFail(code: ErrorCode, message: string, headers?: ReadonlyArray<readonly [string, string]>): void;
  /** The detached leader's last joiner left: nobody wants the upstream response any more. */
  abandon(): void;
  onResponseHead(status: number, lines: HeaderLines, contentLength: number): void;
  onResponseData(chunk: Buffer): boolean;
  onResponseEnd(): void;
}

/** One deployment's cache, per worker thread, with its requests in flight by key. */
export class RouteCache {
  readonly store: ResponseCache;
  readonly flights = new Map<string, Flight>();
  /** The shared tier, when Redis is configured and the policy shares; null: memory only. */
  shared: RedisCache | null;
  /** The policy's `vary` header names in lower case, as the client head has them. */
  vary: readonly string[];
  /** The request headers whose values the key holds, in lower case (storableForMs: a response that varies on others is not stored). */
  keyed: readonly string[];
  /** The deployment's (DeploymentSnapshot.specDigest): a redeploy with another spec gets a cache of its own. */
  readonly specDigest: string;
  readonly #sharedPrefix: string;
  readonly #stats: RequestStats;
  // Made once: stores are not awaited, their failures only counted.
  readonly #onStoreError = (): void => {
    this.#stats.cacheStoreErrors++;
  };
  readonly #share = (key: string, status: number, headers: readonly string[], contentLength: number, chunks: readonly Buffer[], bodyBytes: number, storedAt: number, ttlMs: number): void => {
    const shared = this.shared;
    if (shared === null) return; // a new policy stopped sharing meanwhile
    const value = encodeEntry(status, headers, contentLength, chunks, bodyBytes, storedAt);
    shared.set(this.#sharedPrefix + key, value, ttlMs).catch(this.#onStoreError);
  };

  constructor(deployment: string, specDigest: string, policy: CacheConfig, stats: RequestStats, redis: RedisCache | null) {
    this.store = new ResponseCache(policy);
    this.specDigest = specDigest;
    this.#sharedPrefix = `${SHARED_CACHE_PREFIX}${deployment}:${specDigest}:`;
    this.#stats = stats;
    this.shared = policy.shared ? redis : null;
    this.vary = lowerCase(policy.vary);
    this.keyed = keyedHeaders(policy, this.vary);
  }

  /** Applies a new policy (a route table snapshot): a smaller max_bytes evicts at once. */
  reconfigure(policy: CacheConfig, redis: RedisCache | null): void {
    this.store.reconfigure(policy);
    this.shared = policy.shared ? redis : null;
    this.vary = lowerCase(policy.vary);
    this.keyed = keyedHeaders(policy, this.vary);
  }

  /**
   * Stores a complete response for `ttlMs` (storableForMs) in memory and, without waiting
   * for Redis, in the shared tier.
   */
  keep(key: string, status: number, headers: readonly string[], contentLength: number, chunks: readonly Buffer[], bodyBytes: number, ttlMs: number): void {
    const now = wallNow();
    if (!this.store.set(key, status, headers, contentLength, chunks, bodyBytes, now, ttlMs) || this.shared === null) return;
    // Encoded (a copy of up to max_entry_bytes) after this turn: the response's last bytes,
    // which may still be on their way to the leader's client, go out first.
    setImmediate(this.#share, key, status, headers, contentLength, chunks, bodyBytes, now, ttlMs);
  }

  /** The shared tier's encoded entry for `key`, or null; rejects when Redis fails or is slow. */
  lookUp(shared: RedisCache, key: string): Promise<Buffer | null> {
    return shared.get(this.#sharedPrefix + key);
  }

  /**
   * Keeps an entry found in the shared tier in memory too (it expires when it would have
   * where it was stored), and returns it when it is fresh enough for `maxAgeMs` (-1: any
   * age). Throws CacheEntryError when it cannot be read.
   */
  adopt(key: string, value: Buffer, maxAgeMs: number): CachedResponse | undefined {
    const e = decodeEntry(value);
    // Its lifetime again from its upstream's headers (a max-age shorter than ttl_ms).
    const ttlMs = storableForMs(e.headers, this.store.policy.ttl_ms, this.keyed);
    if (ttlMs <= 0) return undefined;
    this.store.set(key, e.status, e.headers, e.contentLength, e.chunks, e.bodyBytes, e.storedAt, ttlMs);
    return this.store.get(key, wallNow(), maxAgeMs);
  }
}

function lowerCase(names: readonly string[]): readonly string[] {
  return Object.freeze(names.map((n) => n.toLowerCase()));
}

/** The credentials the key holds unless callers share entries (filters/cache.ts, callerIdentity). */
const CREDENTIAL_HEADERS: readonly string[] = Object.freeze(['authorization', 'x-api-key', 'api-key', 'cookie']);

function keyedHeaders(policy: CacheConfig, vary: readonly string[]): readonly string[] {
  // The key always holds the request's Origin too (callerIdentity).
  return Object.freeze([...(policy.shared_across_callers ? [] : CREDENTIAL_HEADERS), 'origin', ...vary]);
}

export class Flight {
  readonly key: string;
  readonly cache: RouteCache;
  readonly leader: FlightMember;
  #joiners: FlightMember[] = [];
  #status = 0;
  #headers: readonly string[] | null = null;
  #contentLength = -1;
  /** Every body chunk so far; null once over max_entry_bytes (neither cached nor joinable) and no joiner is catching up. */
  #chunks: Buffer[] | null = [];
  #bytes = 0;
  /** Over max_entry_bytes: not stored, not joinable; recorded on only for the joiners still catching up. */
  #oversize = false;
  /** Joiners whose catch-up is not over (catchUp >= 0). */
  #catchingUp = 0;
  /**
   * The chunks of the upstream read being delivered, for the joiners: relayed in one write
   * each when the read has been handled (flush), not one per chunk. A stream's read holds
   * many small chunks (an SSE event each), and a joiner's socket fed one per write drains
   * them one system call and one TCP segment at a time, far slower than the leader's.
   */
  readonly #batch: Buffer[] = [];
  #batchBytes = 0;
  #settled = false;
  /** Settled by the whole response (not a failure): a joiner still catching up ends once it has it all. */
  #completed = false;
  /** Waiting for the shared tier (Redis): the upstream is contacted only if it misses. */
  #lookingUp = false;
  /** The strictest Cache-Control max-age (ms) of the requests waiting for the lookup; -1: none. */
  #maxAgeMs = -1;
  /** How long the response may be stored, from its head (storableForMs); 0: not at all. */
  #ttlMs = 0;

  constructor(cache: RouteCache, key: string, leader: FlightMember) {
    this.cache = cache;
    this.key = key;
    this.leader = leader;
    cache.flights.set(key, this);
  }

  get joinerCount(): number {
    return this.#joiners.length;
  }

  /** The response completed or failed: nothing more will be relayed. */
  get settled(): boolean {
    return this.#settled;
  }

  get lookingUp(): boolean {
    return this.#lookingUp;
  }

  get maxAgeMs(): number {
    return this.#maxAgeMs;
  }

  /** The leader looks in the shared tier first; `maxAgeMs` is its client's max-age (-1: none). */
  lookUp(maxAgeMs: number): void {
    this.#lookingUp = true;
    this.#maxAgeMs = maxAgeMs;
  }

  /**
   * Joins while the lookup is pending. An entry too old for any waiting client serves none
   * of them: they all go upstream together rather than each on its own.
   */
  joinLookup(ex: FlightMember, maxAgeMs: number): void {
    if (maxAgeMs >= 0 && (this.#maxAgeMs < 0 || maxAgeMs < this.#maxAgeMs)) this.#maxAgeMs = maxAgeMs;
    this.join(ex);
  }

  /** The lookup missed: the leader now goes upstream for everyone waiting. */
  lookupMissed(): void {
    this.#lookingUp = false;
  }

  /**
   * The lookup found `entry`: every client waiting is answered from it, and the upstream is
   * never contacted. Returns how many clients were answered.
   */
  answer(entry: CachedResponse): number {
    const js = this.#settle();
    const leader = this.leader;
    // Served as plain cache hits, no longer as this flight's leader and joiners.
    leader.flight = null;
    for (const j of js) {
      j.flight = null;
      j.serveCached(entry);
    }
    if (leader.detached) {
      leader.abandon();
      return js.length;
    }
    leader.serveCached(entry);
    return js.length + 1;
  }

  join(ex: FlightMember): void {
    this.flush();
    ex.flight = this;
    this.#joiners.push(ex);
    const headers = this.#headers;
    if (headers === null) return;
    ex.relayHead(this.#status, headers, this.#contentLength);
    ex.catchUp = 0;
    ex.catchUpBytes = this.#bytes;
    this.#catchingUp++;
    this.continueCatchUp(ex);
  }

  /**
   * Writes a late joiner's next piece of the recording (the chunks so far, in a few large
   * writes, not one per chunk: see #batch). Until it has them all, the live reads skip it
   * (flush): they are recorded, and it reaches them. It goes on next turn, or once its socket
   * drains (Exchange's #onWritable) when a write found it full. `free`: called outside any
   * cork (a turn of its own), where each write leaves at once and the next one finds out
   * whether the client took it: it writes on while the client keeps up (a fast client must
   * catch up with a fast upstream); in a cork (join, a drain), one write, then next turn.
   */
  continueCatchUp(ex: FlightMember, free = false): void {
    const chunks = this.#chunks;
    if (ex.catchUp < 0 || ex.flight !== this || chunks === null) return;
    for (;;) {
      const from = ex.catchUp;
      let i = from;
      let bytes = 0;
      while (i < chunks.length && bytes < CATCH_UP_WRITE_BYTES) bytes += chunks[i++]!.length;
      ex.catchUp = i;
      ex.catchUpBytes += bytes;
      if (i > from) ex.relayData(i === from + 1 ? chunks[from]! : Buffer.concat(chunks.slice(from, i), bytes));
      if (ex.flight !== this || ex.catchUp < 0) return;
      if (i === chunks.length) break;
      // Its socket is full: its drain goes on (Exchange's #onWritable).
      if (ex.behind >= 0) return;
      if (!free) {
        setImmediate(catchUpLater, this, ex);
        return;
      }
    }
    this.#stopCatchingUp(ex);
    ex.caughtUp();
    if (this.#completed) ex.relayEnd();
    // The upstream may be waiting for slow members: a joiner that keeps up sets the pace now.
    else if (!this.#settled && ex.behind < 0) this.resume();
  }

  #stopCatchingUp(ex: FlightMember): void {
    if (ex.catchUp < 0) return;
    ex.catchUp = -1;
    // The recording kept on for the joiners catching up goes with the last of them.
    if (--this.#catchingUp === 0 && this.#oversize) this.#chunks = null;
  }

  /** A member's client drained: the upstream, paused while every member was slow, goes on. */
  resume(): void {
    this.leader.resumeUpstream();
  }

  // The leader's response, as its attempt delivers it.
  onResponseHead(status: number, lines: HeaderLines, contentLength: number): void {
    this.#record(status, lines.toArray(), contentLength);
    this.leader.onResponseHead(status, lines, contentLength);
  }

  /** False pauses the upstream: the leader alone is slow, or every member is. */
  onResponseData(chunk: Buffer): boolean {
    this.#recordData(chunk);
    const leader = this.leader;
    const more = leader.onResponseData(chunk);
    // Read after the relay: a response that ended with this chunk has no joiners left.
    const js = this.#joiners;
    // Alone: a plain request's backpressure (a detached leader without joiners is abandoned).
    if (js.length === 0) return more;
    if (!leader.detached) {
      if (more) return true;
      cutIfTooFarBehind(leader);
    }
    // One still catching up is behind the live reads by definition: it sets no pace, and
    // resumes the upstream once it has caught up (continueCatchUp).
    for (let i = 0; i < js.length; i++) if (js[i]!.behind < 0 && js[i]!.catchUp < 0) return true;
    return false;
  }

  onResponseEnd(): void {
    this.#complete();
    this.leader.onResponseEnd();
  }

  #record(status: number, headers: readonly string[], contentLength: number): void {
    this.#status = status;
    this.#headers = headers;
    this.#contentLength = contentLength;
    // Only a 200 is stored; its upstream may forbid it (no-store, private) or shorten it.
    const policy = this.cache.store.policy;
    this.#ttlMs = status === 200 ? storableForMs(headers, policy.ttl_ms, this.cache.keyed) : 0;
    if (this.#ttlMs <= 0 && status === 200) {
      // Not stored, so not replayed to a late joiner either: those in already get it live.
      this.#chunks = null;
      this.#unlist();
    }
    const js = this.#joiners;
    // Backwards: a joiner that completes while being written to leaves by swap-remove.
    for (let i = js.length - 1; i >= 0; i--) js[i]!.relayHead(status, headers, contentLength);
  }

  #recordData(chunk: Buffer): void {
    let chunks = this.#chunks;
    if (chunks !== null && !this.#oversize && this.#bytes + chunk.length > this.cache.store.policy.max_entry_bytes) {
      // Too big to keep: live joiners still get the rest, but nobody new can join. Joiners
      // still catching up read on from the recording: it goes on for them (each is cut once
      // MAX_BEHIND_BYTES behind its end, flush) and is dropped when the last one is done.
      this.#oversize = true;
      this.#unlist();
      if (this.#catchingUp === 0) chunks = this.#chunks = null;
    }
    this.#bytes += chunk.length;
    if (chunks !== null || this.#joiners.length > 0) {
      // The parser's chunk is a view of a socket read: a copy is kept, not the whole read.
      const copy = Buffer.from(chunk);
      chunks?.push(copy);
      if (this.#joiners.length > 0) {
        this.#batch.push(copy);
        this.#batchBytes += copy.length;
      }
    }
    if (this.#whole) this.#complete();
  }

  /** The whole body of an answer of known length has come. */
  get #whole(): boolean {
    return this.#contentLength >= 0 && this.#bytes >= this.#contentLength;
  }

  /**
   * Relays the chunks of the read just handled to the joiners, one write each, and cuts a
   * joiner whose client fell too far behind. Called by the leader once per upstream read
   * (Exchange.corked), and before anything else reaches the joiners.
   */
  flush(): void {
    const batch = this.#batch;
    if (batch.length === 0) return;
    const out = batch.length === 1 ? batch[0]! : Buffer.concat(batch, this.#batchBytes);
    batch.length = 0;
    this.#batchBytes = 0;
    const js = this.#joiners;
    for (let i = js.length - 1; i >= 0; i--) {
      const j = js[i]!;
      if (j.catchUp >= 0) {
        // Catching up: the read is recorded and it gets there, unless it is too far behind.
        if (this.#bytes - j.catchUpBytes > MAX_BEHIND_BYTES) j.cut();
        continue;
      }
      j.relayData(out);
      // Leaves by swap-remove, as a joiner that completes does.
      cutIfTooFarBehind(j);
    }
  }

  /** The response ended whole: joiners end too, and a 200 is stored (not a stream that says its server failed). */
  #complete(): void {
    if (this.#settled) return;
    this.flush();
    this.#completed = true;
    const js = this.#settle();
    const chunks = this.#chunks;
    if (chunks !== null && !this.#oversize && this.#status === 200 && this.#ttlMs > 0 && this.#headers !== null && !(this.#contentLength < 0 && streamEndsInError(chunks))) {
      this.cache.keep(this.key, this.#status, storedHeaders(this.#headers, this.leader.servedBy), this.#contentLength, chunks, this.#bytes, this.#ttlMs);
    }
    // One still catching up ends when it has caught up (continueCatchUp).
    for (const j of js) if (j.catchUp < 0) j.relayEnd();
  }

  /** The shared request failed: each joiner is answered as the leader is. */
  fail(code: ErrorCode, message: string, headers?: ReadonlyArray<readonly [string, string]>): void {
    if (this.#settled) return;
    // What came before the failure goes first (a stream's error event follows it).
    this.flush();
    for (const j of this.#settle()) {
      this.#stopCatchingUp(j);
      j.relayFail(code, message, headers);
    }
  }

  /** An exchange of this flight ended. */
  leave(ex: FlightMember): void {
    if (ex === this.leader) {
      if (!this.#settled) this.fail('SLUICE_ERR_UPSTREAM_RESET', 'the shared upstream request ended early');
      return;
    }
    this.#stopCatchingUp(ex);
    const js = this.#joiners;
    const i = js.indexOf(ex);
    if (i === -1) return;
    js[i] = js[js.length - 1]!;
    js.pop();
    // The leader's client left earlier and the upstream went on only for the joiners. Not
    // for a joiner its last bytes completed (relayed by #complete before it settles): the
    // answer is whole, and the leader's request still counts its tokens.
    if (js.length === 0 && !this.#settled && this.leader.detached && !this.#whole) this.leader.abandon();
  }

  #settle(): FlightMember[] {
    this.#settled = true;
    this.#unlist();
    const js = this.#joiners;
    this.#joiners = [];
    return js;
  }

  #unlist(): void {
    if (this.cache.flights.get(this.key) === this) this.cache.flights.delete(this.key);
  }
}
