// The response cache and the coalescing of identical requests in flight, for deployments
// with a cache policy. At the head: is the request a candidate, and who asks (the cache
// key's caller identity). After admission: the whole body is read for the key, then the
// request is answered from memory, joins an identical request in flight, waits for the
// shared tier's (Redis) lookup with the flight it leads, or goes upstream as a leader.

import type { Buffer } from 'node:buffer';
import { cacheKey, cacheWant, callerKey, type CachedResponse } from '../../policy/index.js';
import type { Logger } from '../../telemetry/index.js';
import { Phase, type BodyWaiter, type Exchange } from '../exchange.js';
import { Flight } from '../flight.js';
import { forwardedHeader, SluiceKeyIn, type ClientHead } from '../headers.js';
import type { KeyRoute } from '../route-table.js';
import { FilterStatus, type RequestFilter } from './filter.js';
import { wallNow } from '../clock.js';

export class CacheFilter implements RequestFilter<Exchange>, BodyWaiter {
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  onHead(ex: Exchange, head: ClientHead): FilterStatus {
    const route = ex.route;
    const policy = route.policies.cache;
    // Only the head is looked at here; a candidate's body is read after admission.
    const want = cacheWant(ex.method, ex.upstreamPath, head.cacheControl, head.xSluiceCache, head.contentLength, policy);
    if (want === null) {
      route.stats.cacheBypass++;
      return FilterStatus.Continue;
    }
    ex.cacheWant = want;
    ex.cacheCaller = callerIdentity(head, ex.key, route.cache!.vary, policy.shared_across_callers);
    return FilterStatus.Continue;
  }

  onRequest(ex: Exchange): FilterStatus {
    if (ex.cacheWant === null) return FilterStatus.Continue;
    if (ex.awaitBody(this, ex.route.policies.cache.max_request_bytes)) return FilterStatus.Pause;
    return this.#lookUp(ex);
  }

  /** A candidate's body has been read whole, or has outgrown max_request_bytes. */
  onWholeBody(ex: Exchange): void {
    if (this.#lookUp(ex) === FilterStatus.Continue) ex.resume();
  }

  /**
   * Answers a candidate from the cache or by joining an identical request in flight, or
   * holds it while its flight looks in the shared tier; Continue when it must go upstream
   * itself at once (a bypass, or a memory miss leading a new flight without a shared tier).
   */
  #lookUp(ex: Exchange): FilterStatus {
    const want = ex.cacheWant!;
    ex.cacheWant = null;
    const route = ex.route;
    const stats = route.stats;
    const cache = route.cache!;
    const body = ex.wholeBody();
    const bodyKey = body === null ? null : cacheKey(want, ex.method, ex.pathQuery, body);
    if (bodyKey === null) {
      stats.cacheBypass++;
      return FilterStatus.Continue;
    }
    const key = callerKey(ex.cacheCaller, bodyKey);
    if (!want.refresh) {
      const entry = cache.store.get(key, wallNow(), want.maxAgeMs);
      if (entry !== undefined) {
        stats.cacheHits++;
        ex.serveCached(entry);
        return FilterStatus.Answered;
      }
    }
    // 'miss' unless a shared-tier lookup then finds the entry. A miss is counted when a
    // replica's head comes for it (Exchange): a gateway error instead says 'bypass'.
    ex.cacheStatus = 'miss';
    const flight = cache.flights.get(key);
    if (flight !== undefined) {
      if (flight.lookingUp) {
        // Requests waiting for a lookup are counted when it ends as hits, or as misses once the leader's answer comes.
        if (!want.refresh) {
          // Shares the leader's answer unless the lookup finds the entry (then a hit).
          ex.cacheStatus = 'coalesced';
          flight.joinLookup(ex, want.maxAgeMs);
          return FilterStatus.Answered;
        }
        // no-cache must not be answered by what the lookup finds: upstream on its own.
        return FilterStatus.Continue;
      }
      // A response in flight is the upstream's, not a stored one: no-cache may share it.
      stats.coalesced++;
      ex.cacheStatus = 'coalesced';
      flight.join(ex);
      return FilterStatus.Answered;
    }
    const lead = ex.flight = new Flight(cache, key, ex);
    const shared = cache.shared;
    if (shared === null || want.refresh) return FilterStatus.Continue;
    lead.lookUp(want.maxAgeMs);
    ex.hold(Phase.CacheLookup);
    cache.lookUp(shared, key).then(
      (value) => this.#lookedUp(ex, lead, value),
      (err: Error) => this.#sharedTierFailed(ex, lead, err),
    );
    return FilterStatus.Pause;
  }

  /** The shared tier answered a flight's lookup: a hit serves everyone waiting, a miss sends the leader upstream. */
  #lookedUp(leader: Exchange, flight: Flight, value: Buffer | null): void {
    let entry: CachedResponse | undefined;
    if (value !== null) {
      try {
        // Kept in memory even when everyone waiting has left: the next request is a memory hit.
        entry = flight.cache.adopt(flight.key, value, flight.maxAgeMs);
      } catch (err) {
        this.#sharedTierFailed(leader, flight, err as Error);
        return;
      }
    }
    if (flight.settled) return;
    const stats = leader.route.stats;
    if (entry !== undefined) {
      const n = flight.answer(entry);
      stats.cacheHits += n;
      stats.cacheRedisHits += n;
      return;
    }
    stats.coalesced += flight.joinerCount;
    flight.lookupMissed();
    leader.resume();
  }

  /** Redis failed, timed out or held an unreadable entry: a miss, counted and logged now and then. */
  #sharedTierFailed(leader: Exchange, flight: Flight, err: Error): void {
    const route = leader.route;
    if (++route.stats.cacheStoreErrors % 1000 === 1) this.#logger.warn({ err: flight.cache.shared?.failure(err) ?? err.message, route: route.id }, 'shared cache store unavailable: answering as a miss');
    this.#lookedUp(leader, flight, null);
  }
}

/**
 * Who is asking, for the cache key (see callerKey): the credentials (unless callers share
 * entries), the page's Origin and the deployment's `vary` headers (always: they say what the
 * answer depends on); '' when none of them is present. A server with CORS answers each
 * origin with its own Access-Control-Allow-Origin and says `Vary: Origin`, which
 * llama-cpp-python's does on every answer: without Origin in the key none would be stored.
 */
function callerIdentity(head: ClientHead, key: KeyRoute | undefined, vary: readonly string[], sharedAcrossCallers: boolean): string {
  let id = sharedAcrossCallers ? '' : credentials(head, key);
  const origin = forwardedHeader(head.headerLines, 'origin');
  if (origin !== '') id += `origin ${origin}\n`;
  for (let i = 0; i < vary.length; i++) id += `${vary[i]} ${forwardedHeader(head.headerLines, vary[i]!)}\n`;
  return id;
}

/**
 * The sluice API key's name and the credentials that go upstream. A sluice key in one of
 * Authorization and x-api-key leaves the other to go upstream (a caller's own provider key,
 * headers.ts credentialLines), which the server may answer differently: it is part of the
 * caller too, or one key's holders would share what the server made for each one's credential.
 */
function credentials(head: ClientHead, key: KeyRoute | undefined): string {
  // The key's digest too: a key deleted and made anew under its name for someone else must
  // not find its former holder's answers.
  let id = key === undefined ? '' : `key ${key.name} ${key.digest}\n`;
  const sluice = head.sluiceKeys;
  if (head.authorization !== '' && (sluice & SluiceKeyIn.Authorization) === 0) id += `authorization ${head.authorization}\n`;
  if (head.xApiKey !== '' && (sluice & SluiceKeyIn.XApiKey) === 0) id += `x-api-key ${head.xApiKey}\n`;
  if (head.apiKey !== '') id += `api-key ${head.apiKey}\n`;
  if (head.cookie !== '') id += `cookie ${head.cookie}\n`;
  return id;
}
