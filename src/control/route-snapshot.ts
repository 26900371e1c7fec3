// Builds the data plane's route table from the control plane's view of deployments.

import type { CostConfig, LimitsConfig, PoliciesConfig, UpstreamOptions } from '../config/index.js';
import { SluiceError } from '../errors/index.js';
import { bucketsFor, KeyScope, type BucketRef } from '../policy/index.js';
import type { ActiveKey } from './api-keys.js';
import type { UpstreamCredential } from './credentials.js';
import type { AliasSnapshot, DeploymentSnapshot, KeySnapshot, ReplicaSnapshot, RouteTableSnapshot } from '../proxy/index.js';

export interface RoutableReplica extends ReplicaSnapshot {
  readonly ready: boolean;
}

export interface RoutableDeployment {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  readonly slot: number;
  /** False while draining: the route disappears for new requests at once. */
  readonly routable: boolean;
  readonly replicas: readonly RoutableReplica[];
  readonly upstream: UpstreamOptions;
  readonly policies: PoliciesConfig;
  readonly maxBodyBytes: number;
  /** Added to every upstream request (config `auth`); null: the client's credentials pass. */
  readonly credential: UpstreamCredential | null;
  /** Deployment ids that take what this one cannot (config `fallbacks`). */
  readonly fallbacks: readonly string[];
  /** No ready replica yet, but one is on its way (or can be woken): requests wait. */
  readonly holds: boolean;
  /** Its replicas are stopped until a request wakes it. */
  readonly hibernated: boolean;
  /** Wakes that failed so far, and why the last did (null: none). */
  readonly wakeFailures: number;
  readonly wakeError: string | null;
  /** Failed: why, in one line, for the requests it refuses; null otherwise. */
  readonly failure: string | null;
  /** It hibernates when idle: requests are counted for the control plane. */
  readonly countsArrivals: boolean;
  /** Its server refuses an x-request-id that is not a UUID (llama-cpp-python): a client's other id is not passed on. */
  readonly uuidRequestIds: boolean;
  readonly cost: CostConfig;
  /** The model name its server knows: the body's `model` is rewritten to it; null: none. */
  readonly servedModel: string | null;
  /** Rewritten on path routes too (configured, not a runtime's default). */
  readonly servedModelOnPaths: boolean;
  /** When it was deployed, in seconds since the epoch (the front door's model lists). */
  readonly created: number;
  /** Of its spec: what its shared cache entries are kept under (Deployment.specDigest). */
  readonly specDigest: string;
}

/**
 * Stable slots for rate-limit buckets by name, so that every route table (and every
 * worker) counts a bucket in the same place. A slot whose bucket the latest table no longer
 * has (an undeployed deployment's, a removed key's) is freed once that table is built, and
 * reset when another bucket gets it: the slots in use are the buckets of one table, however
 * many deployments and keys came and went, and a key added again under a removed one's name
 * starts with a full bucket, as a new key does.
 */
/** What a table build asks for bucket slots: BucketSlots, or its trial() that only counts. */
export interface BucketAssigner {
  readonly slotOf: (id: string) => number;
  beginTable(): void;
  endTable(): void;
}

export class BucketSlots implements BucketAssigner {
  readonly #slots = new Map<string, number>();
  /** Freed slots, oldest first: reused in that order, so that a worker still on an older table is long past one before it counts for another bucket. */
  readonly #free: number[] = [];
  #next = 0;
  readonly #capacity: number;
  readonly #reset: (slot: number) => void;
  /** The buckets the table being built asked for; null between builds. */
  #used: Set<string> | null = null;

  /** `reset`: empties a slot's bucket in the shared memory, before another bucket counts there. */
  constructor(capacity: number, reset: (slot: number) => void) {
    this.#capacity = capacity;
    this.#reset = reset;
  }

  slotOf = (id: string): number => {
    this.#used?.add(id);
    let slot = this.#slots.get(id);
    if (slot === undefined) {
      slot = this.#free.length > 0 ? this.#free.shift()! : this.#next;
      if (slot >= this.#capacity) throw this.#full();
      if (slot === this.#next) this.#next++;
      this.#reset(slot);
      this.#slots.set(id, slot);
    }
    return slot;
  };

  /**
   * Counts the buckets a table would add, taking no slot: a build with it throws as the
   * real one would, so that a change whose buckets would not fit is refused before it is
   * stored (a stored one would leave the workers on the last table).
   */
  trial(): BucketAssigner {
    const added = new Set<string>();
    const room = this.#free.length + this.#capacity - this.#next;
    return {
      slotOf: (id) => {
        const slot = this.#slots.get(id);
        if (slot !== undefined) return slot;
        added.add(id);
        if (added.size > room) throw this.#full();
        return -1;
      },
      beginTable: () => added.clear(),
      endTable: () => added.clear(),
    };
  }

  #full(): SluiceError {
    return new SluiceError('SLUICE_ERR_LIMIT_REACHED', `at most ${this.#capacity} rate-limit buckets (one per limit of each deployment, key, and key on each deployment its scope allows): remove some first`);
  }

  /** A table is being built: the buckets it asks for (slotOf) are the ones in use. */
  beginTable(): void {
    this.#used = new Set();
  }

  /** The table is built: the buckets it does not have give their slots back. */
  endTable(): void {
    const used = this.#used;
    this.#used = null;
    if (used === null) return;
    for (const [id, slot] of this.#slots) {
      if (used.has(id)) continue;
      this.#slots.delete(id);
      this.#free.push(slot);
    }
  }
}

export interface SnapshotInput {
  readonly version: number;
  readonly ready: boolean;
  readonly deployments: readonly RoutableDeployment[];
  /** The alias route of a model that has routable deployments (control/traffic.ts). */
  readonly alias: (model: string) => AliasSnapshot;
  readonly keys: readonly ActiveKey[];
  readonly buckets: BucketAssigner;
  /** Config limits.max_buffered_body_bytes. */
  readonly maxBufferedBodyBytes: number;
  /** Config limits.max_buffered_bytes. */
  readonly maxBufferedBytes: number;
  /** Config metrics.tokens. */
  readonly countTokens: boolean;
}

export function buildRouteSnapshot(input: SnapshotInput): RouteTableSnapshot {
  const slotOf = input.buckets.slotOf;
  input.buckets.beginTable();
  const out: DeploymentSnapshot[] = [];
  const draining: string[] = [];
  const models = new Set<string>();
  for (const d of input.deployments) {
    if (!d.routable) {
      draining.push(d.id);
      continue;
    }
    out.push({
      id: d.id, model: d.model, version: d.version, slot: d.slot, upstream: d.upstream, maxBodyBytes: d.maxBodyBytes, credential: d.credential, fallbacks: d.fallbacks,
      holds: d.holds, hibernated: d.hibernated, wakeFailures: d.wakeFailures, wakeError: d.wakeError, failure: d.failure, countsArrivals: d.countsArrivals, uuidRequestIds: d.uuidRequestIds, cost: d.cost,
      countsTokens: input.countTokens || d.cost.per_1k_input_tokens > 0 || d.cost.per_1k_output_tokens > 0, servedModel: d.servedModel, servedModelOnPaths: d.servedModelOnPaths, created: d.created, specDigest: d.specDigest,
      policies: d.policies, buckets: bucketsFor(`dep:${d.id}`, `deployment ${d.id}`, d.policies.rate_limit, slotOf),
      replicas: d.replicas.filter((r) => r.ready).map(({ ready: _ready, ...replica }) => replica),
    });
    models.add(d.model);
  }
  const aliases = [...models].map(input.alias);
  const keys: KeySnapshot[] = input.keys.map((k) => {
    const deploymentBuckets: Record<string, readonly BucketRef[]> = {};
    // Only on the deployments the key may call: one that requires keys refuses it elsewhere,
    // and one open to all serves its caller without the key as well. A bucket for every
    // deployment would be keys x deployments of them (the shared array's slots run out).
    if (hasLimit(k.deployment_limits)) {
      const scope = new KeyScope(k.deployments);
      for (const d of out) {
        if (scope.allows(d.id, d.model)) deploymentBuckets[d.id] = bucketsFor(`key:${k.name}:dep:${d.id}`, `API key '${k.name}' on deployment ${d.id}`, k.deployment_limits, slotOf);
      }
    }
    return { name: k.name, digest: k.digest, scope: k.deployments, buckets: bucketsFor(`key:${k.name}`, `API key '${k.name}'`, k.limits, slotOf), deploymentBuckets };
  });
  input.buckets.endTable();
  return { version: input.version, ready: input.ready, deployments: out, draining, aliases, keys, maxBufferedBodyBytes: input.maxBufferedBodyBytes, maxBufferedBytes: input.maxBufferedBytes };
}

function hasLimit(limits: LimitsConfig): boolean {
  return limits.requests_per_second > 0 || limits.requests_per_minute > 0 || limits.tokens_per_minute > 0;
}
