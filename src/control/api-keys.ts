// The client API keys in force: those of the config file (read-only here) and those added
// through the admin API, which the state store keeps as digests so that they survive a
// restart and, on Redis, reach every gateway instance. A key in the clear exists only in
// the answer to the request that created it.

import { randomBytes } from 'node:crypto';
import type { ApiKeyConfig, LimitsConfig } from '../config/index.js';
import { SluiceError } from '../errors/index.js';
import { GENERATED_KEY_PREFIX, hashKey, keyLabel } from '../policy/index.js';
import type { DesiredStateStore, KeyClash, StoredApiKey } from '../state/index.js';
import type { Logger } from '../telemetry/index.js';

/** A key as the route table and the admin API see it. */
export interface ActiveKey {
  readonly name: string;
  readonly digest: string;
  readonly deployments: readonly string[];
  readonly limits: LimitsConfig;
  readonly deployment_limits: LimitsConfig;
  readonly source: 'config' | 'api';
  readonly created_at: string | null;
}

export interface KeyRegistryOptions {
  /** Config keys, already reduced to digests by the loader. */
  readonly configured: readonly ApiKeyConfig[];
  readonly store: DesiredStateStore;
  readonly logger: Logger;
  /** The keys changed: publish a new route table. */
  readonly onChange: () => void;
  /** Throws (SLUICE_ERR_LIMIT_REACHED) when a route table with `key` added could not be built. */
  readonly fits?: (key: ActiveKey) => void;
}


export class KeyRegistry {
  readonly #o: KeyRegistryOptions;
  readonly #configured: ReadonlyMap<string, ActiveKey>;
  #added = new Map<string, ActiveKey>();
  // Names and digests of the keys being stored, and names being removed: taken before the
  // store is written, so that a request arriving meanwhile sees them (409, 404) rather than
  // passing the same checks and writing a second key of that name or digest.
  readonly #adding = new Set<string>();
  readonly #addingDigests = new Set<string>();
  readonly #removing = new Set<string>();

  constructor(options: KeyRegistryOptions) {
    this.#o = options;
    this.#configured = new Map(options.configured.map((k) => [k.name, activeKey(k, k.key_sha256!, 'config', null)]));
  }

  /** Every key in force: config keys first, then added ones, oldest first. */
  list(): ActiveKey[] {
    return [...this.#configured.values(), ...this.#added.values()];
  }

  get(name: string): ActiveKey | undefined {
    return this.#configured.get(name) ?? this.#added.get(name);
  }

  /** Reads the added keys from the store (at start, and on Redis to follow other instances). */
  async load(): Promise<void> {
    const next = new Map<string, ActiveKey>();
    for (const k of await this.#o.store.loadKeys()) {
      if (this.#configured.has(k.name)) {
        this.#o.logger.warn({ key: keyLabel(k.name, k.key_sha256) }, 'a stored API key has the name of a config key: the config key is used');
        continue;
      }
      next.set(k.name, activeKey(k, k.key_sha256, 'api', k.created_at));
    }
    // A key is never edited in place, only removed and added again, which stamps a new
    // created_at: name, digest and created_at tell whether the route table must change.
    const changed = next.size !== this.#added.size ||
      [...next].some(([name, k]) => { const had = this.#added.get(name); return had?.digest !== k.digest || had.created_at !== k.created_at; });
    this.#added = next;
    if (changed) this.#o.onChange();
  }

  /**
   * The shared store lost its data (StateLostError): the added keys are stored again (their
   * digests), each only if no key of its name or digest is stored meanwhile. Returns how
   * many this instance stored.
   */
  async storeAgain(): Promise<number> {
    let stored = 0;
    for (const k of this.#added.values()) {
      const key: StoredApiKey = { name: k.name, key_sha256: k.digest, deployments: k.deployments, limits: k.limits, deployment_limits: k.deployment_limits, created_at: k.created_at! };
      if (await this.#o.store.addKey(key) === null) stored++;
    }
    return stored;
  }

  /**
   * Adds a key. `spec.key` null and `spec.key_sha256` null: a key is generated and
   * returned, once. Returns the key in the clear only when it was generated here.
   */
  async create(spec: ApiKeyConfig): Promise<{ key: ActiveKey; secret: string | null }> {
    if (this.#configured.has(spec.name)) throw new SluiceError('SLUICE_ERR_CONFIG_OWNED', `API key '${spec.name}' is defined in the config file: change it there`);
    if (this.get(spec.name) !== undefined || this.#adding.has(spec.name)) throw new SluiceError('SLUICE_ERR_CONFLICT', `an API key named '${spec.name}' exists`);
    if (spec.key !== null && spec.key_sha256 !== null) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', 'key: give key or key_sha256, not both', { field: 'key' });
    // A generated key: a recognisable prefix and 192 random bits.
    const secret = spec.key === null && spec.key_sha256 === null ? GENERATED_KEY_PREFIX + randomBytes(24).toString('base64url') : null;
    const digest = spec.key_sha256 ?? hashKey(spec.key ?? secret!);
    if (this.list().some((k) => k.digest === digest) || this.#addingDigests.has(digest)) throw new SluiceError('SLUICE_ERR_CONFLICT', 'this key is already in use under another name');
    const stored: StoredApiKey = {
      name: spec.name, key_sha256: digest, deployments: spec.deployments, limits: spec.limits, deployment_limits: spec.deployment_limits,
      created_at: new Date().toISOString(),
    };
    this.#o.fits?.(activeKey(stored, digest, 'api', stored.created_at));
    this.#adding.add(spec.name);
    this.#addingDigests.add(digest);
    let clash: KeyClash | null;
    try {
      clash = await this.#o.store.addKey(stored);
    } finally {
      this.#adding.delete(spec.name);
      this.#addingDigests.delete(digest);
    }
    // Another instance added it since this one last read the keys.
    if (clash === 'name') throw new SluiceError('SLUICE_ERR_CONFLICT', `an API key named '${spec.name}' exists`);
    if (clash === 'digest') throw new SluiceError('SLUICE_ERR_CONFLICT', 'this key is already in use under another name');
    const key = activeKey(stored, digest, 'api', stored.created_at);
    this.#added.set(key.name, key);
    this.#o.logger.info({ key: keyLabel(key.name, digest) }, 'API key added');
    this.#o.onChange();
    return { key, secret };
  }

  async remove(name: string): Promise<ActiveKey> {
    if (this.#configured.has(name)) throw new SluiceError('SLUICE_ERR_CONFIG_OWNED', `API key '${name}' is defined in the config file: remove it there`);
    const key = this.#added.get(name);
    if (key === undefined || this.#removing.has(name)) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no API key '${name}'`);
    this.#removing.add(name);
    try {
      await this.#o.store.removeKey(name);
    } finally {
      this.#removing.delete(name);
    }
    this.#added.delete(name);
    this.#o.logger.info({ key: keyLabel(name, key.digest) }, 'API key removed');
    this.#o.onChange();
    return key;
  }
}

type KeySpec = Pick<ApiKeyConfig, 'name' | 'deployments' | 'limits' | 'deployment_limits'>;

function activeKey(k: KeySpec, digest: string, source: ActiveKey['source'], createdAt: string | null): ActiveKey {
  return { name: k.name, digest, deployments: k.deployments, limits: k.limits, deployment_limits: k.deployment_limits, source, created_at: createdAt };
}
