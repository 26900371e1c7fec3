import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CircuitOpenError, DependencyUnavailableError, guarded, watchConnection, type CallBreaker } from '../dependencies/index.js';
import { decodeEntry, decodeKeyEntry, decodeTrafficEntry, desiredId, encodeEntry } from './codec.js';
import { StateError, StateLostError, type DesiredDeployment, type DesiredStateStore, type KeyClash, type StoredApiKey, type StoredDeployments, type StoredTraffic } from './types.js';

// A hash, one field per deployment: instances that share the Redis change only the
// deployments they deploy or undeploy, never each other's.
const KEY = 'sluice:deployments';
// API keys likewise, one field per key name (digests only).
const API_KEYS = 'sluice:api_keys';
// Each model's traffic (weights, stable version, events), one field per model.
const TRAFFIC = 'sluice:traffic';
// Leases (one instance analyses each rollout, one runs a shared deployment's servers) and
// records by instance (putShared: a hash per name, one field per instance).
const LEASE = 'sluice:lease:';
const SHARED = 'sluice:';
// Take the lease when free, renew it when ours: one round trip, no window between the two.
const LEASE_SCRIPT = `local v = redis.call('get', KEYS[1])
if v == false then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
return 0`;
// Adds an API key unless its name or digest is stored: one script, so that two instances
// adding the same name (or key) at once cannot both pass the check. 1: name, 2: digest.
const ADD_KEY_SCRIPT = `if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then return 1 end
for _, v in ipairs(redis.call('hvals', KEYS[1])) do
  if cjson.decode(v).key_sha256 == ARGV[2] then return 2 end
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
return 0`;
// Stores a model's traffic unless the stored record is newer than the one the change was
// made on (ISO times compare as strings): checked and written in one step.
const PUT_TRAFFIC_OVER_SCRIPT = `local v = redis.call('hget', KEYS[1], ARGV[1])
if v and cjson.decode(v).updated_at > ARGV[2] then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
return 1`;
// An empty hash cannot tell "everything was removed" from "Redis came back without its
// data" (restarted without persistence, a rescheduled pod whose AOF was on an emptyDir).
// This key can: a hash whose one field holds the generation of the stored state, written by
// the first instance that reads the store and kept there (a hash, so that the state's
// polls are HGETs, told apart from the shared cache's GETs in Redis's command counts). Gone, or another generation than the one this
// instance read, means the data was lost (or lost and stored again by another instance).
const GENERATION = 'sluice:state:initialised';
// Builds of 2026-12-07 between 7af2017 and 1c00211 kept the generation as a plain string
// under the same key: read as such (`STORED_GENERATION`), so that a store they initialised,
// or share during a rolling upgrade, is read rather than refused with WRONGTYPE.
const STORED_GENERATION = `local function generation(key)
  if redis.call('type', key).ok == 'string' then return redis.call('get', key) end
  return redis.call('hget', key, 'generation')
end
`;
// The generation and one hash read in one step, so that a loss cannot fall between the two.
// ARGV[1] '': this instance has read no generation yet, and a store without one is new:
// ARGV[2] becomes its generation (made only for a first read; the polls after it pass '').
const READ_SCRIPT = `${STORED_GENERATION}local g = generation(KEYS[1])
if g == false and ARGV[1] == '' then redis.call('hset', KEYS[1], 'generation', ARGV[2]) g = ARGV[2] end
return {g, redis.call('hgetall', KEYS[2])}`;
// After a loss: a new generation, unless another instance that restored its state set one.
const NEW_GENERATION_SCRIPT = `${STORED_GENERATION}if generation(KEYS[1]) == false then redis.call('hset', KEYS[1], 'generation', ARGV[1]) end
return generation(KEYS[1])`;
// Removes a model's traffic unless the stored record is newer than the one the removal was
// decided on.
const REMOVE_TRAFFIC_OVER_SCRIPT = `local v = redis.call('hget', KEYS[1], ARGV[1])
if v and cjson.decode(v).updated_at > ARGV[2] then return 0 end
redis.call('hdel', KEYS[1], ARGV[1])
return 1`;
const RELEASE_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0`;

export interface RedisStateStoreOptions {
  /** Per command (config dependencies.redis.state.timeout_ms). */
  readonly timeoutMs: number;
  /** Every command goes through it: a Redis that keeps failing fails the next ones at once. */
  readonly breaker: CallBreaker;
  /**
   * An entry this version cannot read (another version of sluice stored it, during a rolling
   * upgrade), said once, and again when it changes: which, why, and what to do.
   */
  readonly onUnreadable: (message: string) => void;
}

/** Desired state shared by every gateway instance on one Redis (SLUICE_REDIS_URL). */
export class RedisStateStore implements DesiredStateStore {
  readonly kind = 'redis';
  readonly #redis: Redis;
  readonly #where: string;
  readonly #breaker: CallBreaker;
  readonly #onUnreadable: (message: string) => void;
  /** The unreadable entries already said, by `<hash> <field>`: the text they held then. */
  readonly #reported = new Map<string, string>();
  /** What a failed command says: while there is no connection, why (a refused password, Redis down). */
  readonly #failure: (err: unknown) => string;
  /** The generation of the stored state this instance read (GENERATION); null before the first read. */
  #generation: string | null = null;

  constructor(url: string, options: RedisStateStoreOptions) {
    this.#redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: options.timeoutMs, commandTimeout: options.timeoutMs });
    this.#breaker = options.breaker;
    this.#onUnreadable = options.onUnreadable;
    this.#failure = watchConnection(this.#redis, options.timeoutMs);
    this.#where = `redis ${redactUrl(url)}`;
  }

  async load(): Promise<StoredDeployments> {
    const { entries, unreadable } = this.#decodeEach(KEY, await this.#readHash(KEY, 'state'), decodeEntry,
      'it is neither started nor removed here, and goes on running here if it was: undeploy it through the instance that stored it, or remove it');
    // Oldest first, as they were deployed (the alias route defaults to the newest).
    entries.sort((a, b) => a.created_at.localeCompare(b.created_at) || desiredId(a.spec).localeCompare(desiredId(b.spec)));
    return { deployments: entries, unreadable };
  }

  async put(deployment: DesiredDeployment, replace: boolean): Promise<boolean> {
    const id = desiredId(deployment.spec);
    const entry = encodeEntry(deployment);
    if (replace) {
      await this.#call(() => this.#redis.hset(KEY, id, entry));
      return true;
    }
    return (await this.#call(() => this.#redis.hsetnx(KEY, id, entry))) === 1;
  }

  async remove(id: string): Promise<void> {
    await this.#call(() => this.#redis.hdel(KEY, id));
  }

  async loadKeys(): Promise<StoredApiKey[]> {
    const { entries } = this.#decodeEach(API_KEYS, await this.#readHash(API_KEYS, 'API keys'), decodeKeyEntry,
      'the key authenticates nothing on this instance: remove it through the instance that stored it, or remove it');
    return entries.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.name.localeCompare(b.name));
  }

  async addKey(key: StoredApiKey): Promise<KeyClash | null> {
    const clash = await this.#call(() => this.#redis.eval(ADD_KEY_SCRIPT, 1, API_KEYS, key.name, key.key_sha256, encodeEntry(key)));
    return clash === 1 ? 'name' : clash === 2 ? 'digest' : null;
  }

  async removeKey(name: string): Promise<void> {
    await this.#call(() => this.#redis.hdel(API_KEYS, name));
  }

  async loadTraffic(): Promise<StoredTraffic[]> {
    return this.#decodeEach(TRAFFIC, await this.#readHash(TRAFFIC, 'traffic'), decodeTrafficEntry,
      'this instance keeps the traffic it has for the model: change it through the instance that stored it, or remove it').entries;
  }

  async putTraffic(traffic: StoredTraffic, over: string | null): Promise<boolean> {
    const entry = encodeEntry(traffic);
    if (over === null) {
      await this.#call(() => this.#redis.hset(TRAFFIC, traffic.model, entry));
      return true;
    }
    return (await this.#call(() => this.#redis.eval(PUT_TRAFFIC_OVER_SCRIPT, 1, TRAFFIC, traffic.model, over, entry))) === 1;
  }

  async removeTraffic(model: string, over: string): Promise<boolean> {
    return (await this.#call(() => this.#redis.eval(REMOVE_TRAFFIC_OVER_SCRIPT, 1, TRAFFIC, model, over))) === 1;
  }

  async lease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return (await this.#call(() => this.#redis.eval(LEASE_SCRIPT, 1, LEASE + name, holder, String(Math.ceil(ttlMs))))) === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#call(() => this.#redis.eval(RELEASE_SCRIPT, 1, LEASE + name, holder));
  }

  async putShared(name: string, holder: string, json: string, ttlMs: number): Promise<void> {
    await this.#call(() => this.#redis.multi().hset(SHARED + name, holder, json).pexpire(SHARED + name, Math.ceil(ttlMs)).exec());
  }

  async loadShared(name: string): Promise<Record<string, string>> {
    return this.#call(() => this.#redis.hgetall(SHARED + name));
  }

  async removeShared(name: string, holder: string): Promise<void> {
    await this.#call(() => this.#redis.hdel(SHARED + name, holder));
  }

  async time(): Promise<number> {
    const [seconds, micros] = await this.#call(() => this.#redis.time());
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async memoryRisk(): Promise<string | null> {
    let info: string;
    try {
      info = await this.#call(() => this.#redis.info('memory'));
    } catch {
      return null; // INFO refused (an ACL): nothing known, nothing said
    }
    const field = (name: string): string => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
    const maxmemory = Number(field('maxmemory'));
    const policy = field('maxmemory_policy');
    if (!(maxmemory > 0)) return null;
    const instead = 'set maxmemory-policy volatile-lru, which evicts only what sluice stores with an expiry (cached responses, rate-limit buckets)';
    if (policy === 'noeviction') {
      return `${this.#where} has maxmemory ${maxmemory} with maxmemory-policy noeviction: once the shared cache fills it, every admin change fails (OOM) and rate limits are checked per instance until entries expire; ${instead}`;
    }
    if (policy.startsWith('allkeys-')) {
      return `${this.#where} has maxmemory ${maxmemory} with maxmemory-policy ${policy}: once full it may evict the desired state (deployments, API keys, traffic), which the instances then store again; ${instead}`;
    }
    return null;
  }

  async restored(): Promise<void> {
    this.#generation = await this.#call(() => this.#redis.eval(NEW_GENERATION_SCRIPT, 1, GENERATION, randomUUID())) as string;
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }

  /**
   * One command through the breaker. The client connects lazily, on the first command of
   * the store. A failure is a DependencyUnavailableError (503, nothing changed), an open
   * breaker a CircuitOpenError (Redis was not asked).
   */
  async #call<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await guarded(this.#breaker, async () => {
        if (this.#redis.status === 'wait') await this.#redis.connect();
        return command();
      });
    } catch (err) {
      if (err instanceof CircuitOpenError) throw err;
      throw new DependencyUnavailableError('redis', 'state', this.#failure(err));
    }
  }

  /**
   * Each field of `hash` decoded on its own: one entry this version cannot read must not hide
   * the others (deployments, key revocations and weights other instances store meanwhile).
   * Those it cannot read are said once (`consequence`: what becomes of them here) and listed.
   */
  #decodeEach<T>(hash: string, fields: Record<string, string>, decode: (text: string, field: string, where: string) => T, consequence: string): { entries: T[]; unreadable: string[] } {
    const entries: T[] = [];
    const unreadable: string[] = [];
    for (const [field, text] of Object.entries(fields)) {
      try {
        entries.push(decode(text, field, `${this.#where} key ${hash} field ${field}`));
      } catch (err) {
        if (!(err instanceof StateError)) throw err;
        unreadable.push(field);
        const at = `${hash} ${field}`;
        if (this.#reported.get(at) !== text) this.#onUnreadable(`${err.message} (this version of sluice cannot read it: stored by another version?); ${consequence}: HDEL ${hash} ${field}`);
        this.#reported.set(at, text);
      }
    }
    // Readable again, or gone: said again if it turns unreadable once more.
    for (const at of this.#reported.keys()) if (at.startsWith(`${hash} `) && !unreadable.includes(at.slice(hash.length + 1))) this.#reported.delete(at);
    return { entries, unreadable };
  }

  /**
   * Every field of hash `key`; a Redis that does not answer is a StateError naming `what`.
   * One that lost the state this instance read from it is a StateLostError: its empty hashes
   * are not what the instances want.
   */
  async #readHash(key: string, what: string): Promise<Record<string, string>> {
    let reply: [string | null, string[]];
    try {
      reply = await this.#call(() => this.#redis.eval(READ_SCRIPT, 2, GENERATION, key, this.#generation ?? '', this.#generation === null ? randomUUID() : '')) as [string | null, string[]];
    } catch (err) {
      if (!(err instanceof DependencyUnavailableError)) throw err;
      throw new StateError(`${this.#where} key ${key}: cannot read ${what} (${err.reason})`);
    }
    const [generation, flat] = reply;
    this.#generation ??= generation;
    if (generation !== this.#generation) {
      throw new StateLostError(`${this.#where} key ${key}: the shared state was lost (${GENERATION} is ${generation === null ? 'gone' : 'made anew by another instance'}): Redis restarted without its data?`);
    }
    const fields: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    return fields;
  }
}

/** Secrets never reach logs: keep scheme, host and port only. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}${u.port ? ':' + u.port : ''}`;
  } catch {
    return '(invalid url)';
  }
}
