// Request coalescing: identical cache candidates in flight at the same time share one
// upstream call. The first one (the leader) is a normal Exchange talking to a replica; its
// response events are recorded here and relayed to the others (joiners), which never
// contact an upstream. A late joiner first gets the head and chunks so far, then the live
// ones. The recording is also what the cache stores when the response completes.

import type { CacheConfig } from '../config/index.js';
import type { ErrorCode } from '../errors/index.js';
import { ResponseCache } from '../policy/index.js';
import type { Exchange } from './exchange.js';

/** One deployment's cache, per worker thread, with its requests in flight by key. */
export class RouteCache {
  readonly store: ResponseCache;
  readonly flights = new Map<string, Flight>();

  constructor(policy: CacheConfig) {
    this.store = new ResponseCache(policy);
  }
}

export class Flight {
  readonly key: string;
  readonly cache: RouteCache;
  readonly leader: Exchange;
  #joiners: Exchange[] = [];
  #status = 0;
  #headers: readonly string[] | null = null;
  #contentLength = -1;
  /** Every body chunk so far; null once over max_entry_bytes (neither cached nor joinable). */
  #chunks: Buffer[] | null = [];
  #bytes = 0;
  #settled = false;

  constructor(cache: RouteCache, key: string, leader: Exchange) {
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

  join(ex: Exchange): void {
    ex.flight = this;
    this.#joiners.push(ex);
    const headers = this.#headers;
    if (headers === null) return;
    ex.relayHead(this.#status, headers, this.#contentLength);
    for (const c of this.#chunks!) ex.relayData(c);
  }

  onHead(status: number, headers: readonly string[], contentLength: number): void {
    this.#status = status;
    this.#headers = headers;
    this.#contentLength = contentLength;
    const js = this.#joiners;
    // Backwards: a joiner that completes while being written to leaves by swap-remove.
    for (let i = js.length - 1; i >= 0; i--) js[i]!.relayHead(status, headers, contentLength);
  }

  onData(chunk: Buffer): void {
    let chunks = this.#chunks;
    if (chunks !== null && this.#bytes + chunk.length > this.cache.store.policy.max_entry_bytes) {
      // Too big to keep: live joiners still get the rest, but nobody new can join.
      chunks = this.#chunks = null;
      this.#unlist();
    }
    this.#bytes += chunk.length;
    const js = this.#joiners;
    if (chunks !== null || js.length > 0) {
      // The parser's chunk is a view of a socket read: a copy is kept, not the whole read.
      const copy = Buffer.from(chunk);
      chunks?.push(copy);
      for (let i = js.length - 1; i >= 0; i--) js[i]!.relayData(copy);
    }
    if (this.#contentLength >= 0 && this.#bytes >= this.#contentLength) this.onEnd();
  }

  /** The response ended whole: joiners end too, and a 200 is stored. */
  onEnd(): void {
    if (this.#settled) return;
    const js = this.#settle();
    const chunks = this.#chunks;
    if (chunks !== null && this.#status === 200 && this.#headers !== null) {
      this.cache.store.set(this.key, this.#status, this.#headers, this.#contentLength, chunks, this.#bytes, Date.now());
    }
    for (const j of js) j.relayEnd();
  }

  /** The shared request failed: each joiner is answered as the leader is. */
  fail(code: ErrorCode, message: string, headers?: ReadonlyArray<readonly [string, string]>): void {
    if (this.#settled) return;
    for (const j of this.#settle()) j.relayFail(code, message, headers);
  }

  /** An exchange of this flight ended. */
  leave(ex: Exchange): void {
    if (ex === this.leader) {
      if (!this.#settled) this.fail('SLUICE_ERR_UPSTREAM_RESET', 'the shared upstream request ended early');
      return;
    }
    const js = this.#joiners;
    const i = js.indexOf(ex);
    if (i === -1) return;
    js[i] = js[js.length - 1]!;
    js.pop();
    // The leader's client left earlier and the upstream went on only for the joiners.
    if (js.length === 0 && !this.#settled && this.leader.detached) this.leader.abandon();
  }

  #settle(): Exchange[] {
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
