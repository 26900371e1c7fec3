// The route table: published by the control plane as plain, structured-clonable data
// (RouteTableSnapshot), compiled once per worker into an immutable RouteTable. A request
// reads the table reference once when it starts and keeps it until it ends (Envoy's RDS
// model), so a swap never disturbs requests in flight.

import { Buffer } from 'node:buffer';
import {
  cumulativeWeights, LatencyMemory, LeastOutstanding, LowestLatency, pickSticky, pickWeighted, ReplicaGate, RoundRobin, stickyHash, QueueAware, Tiered, WeightedReplicas,
  type Balancer, type ReplicaLoadBoard, type BreakerBoard, type BreakerOptions, type WorkerHolds,
} from '../balancer/index.js';
import type { CostConfig, PoliciesConfig, UpstreamOptions } from '../config/index.js';
import { KeyScope, type BucketRef, type RedisCache } from '../policy/index.js';
import { RequestStats } from '../telemetry/index.js';
import { UpstreamPool } from './upstream/index.js';
import type { FilterChain } from './filters/filter.js';
import { RouteCache } from './flight.js';
import { authority, uriHost } from '../authority.js';

export interface ReplicaSnapshot {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** Path prefix of a remote URL (`http://h/base` -> `/base`), '' for local replicas. */
  readonly basePath: string;
  /** A remote URL's query, without `?` ('' for none, and for local replicas): first in every request's query. */
  readonly query: string;
  /** An `https://` remote: spoken to over TLS. */
  readonly tls: boolean;
  /** Slot in the shared in-flight counters; stable for the replica's lifetime. */
  readonly slot: number;
  /** Read by the weighted, failover and lowest_cost strategies. */
  readonly weight: number;
  readonly priority: number;
  readonly cost: number;
}

export interface DeploymentSnapshot {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  /** Slot in the shared per-deployment counters (queue length, retry budget). */
  readonly slot: number;
  readonly policies: PoliciesConfig;
  /** The deployment's own rate-limit buckets. */
  readonly buckets: readonly BucketRef[];
  /** Ready replicas only: a replica that is starting or failed gets no traffic. */
  readonly replicas: readonly ReplicaSnapshot[];
  readonly upstream: UpstreamOptions;
  readonly maxBodyBytes: number;
  /** A header the gateway adds to every upstream request (a provider's key); null: none. */
  readonly credential: { readonly name: string; readonly value: string } | null;
  /** Deployment ids that take what this one cannot, in order (ids not routed are skipped). */
  readonly fallbacks: readonly string[];
  /** No ready replica yet, but one is coming (starting, restarting, waking): requests wait (policies.hold). */
  readonly holds: boolean;
  /** Its replicas are stopped: a held request asks the control plane to wake it. */
  readonly hibernated: boolean;
  /** Wakes that failed so far: a request held under a table with fewer is answered (its wake failed). */
  readonly wakeFailures: number;
  /** Why the last wake failed; null: none did. */
  readonly wakeError: string | null;
  /** Failed (its servers did not start, or crashed too often): why, in one line; null otherwise. */
  readonly failure: string | null;
  /** It hibernates when idle: each request is counted for the control plane's autoscaler. */
  readonly countsArrivals: boolean;
  /**
   * Its server answers 400 to an x-request-id that is not a UUID (llama-cpp-python, through
   * starlette-context): a client's other id is echoed and logged, and the server gets one sluice makes.
   */
  readonly uuidRequestIds: boolean;
  /** Its prices: each answered request is charged (RequestStats.charge). */
  readonly cost: CostConfig;
  /** Its answers' tokens are counted (config metrics.tokens, or token prices). */
  readonly countsTokens: boolean;
  /**
   * The model name its server knows: the body's `model` is rewritten to it; null: none.
   * A runtime's default (the simulator's model, Ollama's `model:version`) applies at the
   * front door only, where the body names the gateway's model; a configured one applies on
   * path routes too.
   */
  readonly servedModel: string | null;
  readonly servedModelOnPaths: boolean;
  /** Deployed at, in seconds since the epoch. */
  readonly created: number;
  /** Of its spec: another under the same id (undeployed, deployed anew) has other cache entries. */
  readonly specDigest: string;
}

export interface AliasSnapshot {
  readonly model: string;
  readonly targets: ReadonlyArray<{ readonly deployment: string; readonly weight: number }>;
  /** Requests with the same value of this header (lower case) go to the same version; '' for the API key's name; null: none. */
  readonly stickyHeader: string | null;
}

export interface KeySnapshot {
  readonly name: string;
  /** SHA-256 of the key, hex: the key itself never leaves the control plane. */
  readonly digest: string;
  readonly scope: readonly string[];
  /** Limits of the key over all its deployments. */
  readonly buckets: readonly BucketRef[];
  /** Limits of the key on each deployment, by deployment id. */
  readonly deploymentBuckets: Readonly<Record<string, readonly BucketRef[]>>;
}

export interface RouteTableSnapshot {
  readonly version: number;
  /** Every deployment meant to run has a ready replica or has failed: /readyz answers 200. */
  readonly ready: boolean;
  readonly deployments: readonly DeploymentSnapshot[];
  /**
   * Deployments being undeployed: no longer routed, but their requests in flight still
   * count in their stats. Stats of a deployment in neither list are dropped (it is gone).
   */
  readonly draining: readonly string[];
  readonly aliases: readonly AliasSnapshot[];
  readonly keys: readonly KeySnapshot[];
  /** The most a request body read whole before it is routed may have (front door, served_model). */
  readonly maxBufferedBodyBytes: number;
  /** The most a worker holds of such bodies while they arrive. */
  readonly maxBufferedBytes: number;
}

/** Memory every worker shares with the control plane, laid out once at start-up. */
export interface SharedState {
  readonly inflight: Int32Array;
  /** What this worker holds of the shared counts (in-flight slots, breaker probes): given back should it die. */
  readonly holds: WorkerHolds;
  /** The other workers', whose oldest waiters come before this one's newer ones; none: this worker's order alone. */
  readonly otherHolds?: readonly WorkerHolds[];
  readonly breakers: BreakerBoard;
  /** What the replicas' own servers report (queue_aware). */
  readonly replicaLoad: ReplicaLoadBoard;
}

export class ReplicaRoute {
  readonly id: string;
  readonly slot: number;
  readonly pool: UpstreamPool;
  /** Host header for the upstream: Ollama rejects foreign Host values. */
  readonly hostHeader: string;
  readonly basePath: string;
  /** See ReplicaSnapshot.query. */
  readonly query: string;
  readonly origin: string;
  /** What follows the request target in every request head sent to this replica. */
  readonly headAfterTarget: string;
  readonly weight: number;
  readonly priority: number;
  readonly cost: number;

  constructor(snap: ReplicaSnapshot, pool: UpstreamPool) {
    this.id = snap.id;
    this.slot = snap.slot;
    this.weight = snap.weight;
    this.priority = snap.priority;
    this.cost = snap.cost;
    this.pool = pool;
    // The scheme's own port is left out, as clients write it: a virtual host behind a CDN may not answer to `name:443`.
    this.hostHeader = snap.port === (snap.tls ? 443 : 80) ? uriHost(snap.host) : authority(snap.host, snap.port);
    this.basePath = snap.basePath;
    this.query = snap.query;
    this.origin = `${snap.tls ? 'https' : 'http'}://${this.hostHeader}${snap.basePath}`;
    this.headAfterTarget = ` HTTP/1.1\r\nhost: ${this.hostHeader}\r\n`;
  }
}

function balancerFor(choice: PoliciesConfig['balancer'], gate: ReplicaGate<ReplicaRoute>, latency: LatencyMemory, replicaLoad: ReplicaLoadBoard): Balancer<ReplicaRoute> {
  switch (choice.strategy) {
    case 'least_outstanding': return new LeastOutstanding(gate);
    case 'round_robin': return new RoundRobin(gate);
    case 'weighted': return new WeightedReplicas(gate);
    case 'lowest_latency': return new LowestLatency(gate, latency, choice.latency_buffer, choice.probe_interval_ms);
    case 'lowest_cost': return new Tiered(gate, (r) => r.cost);
    case 'failover': return new Tiered(gate, (r) => r.priority);
    case 'queue_aware': return new QueueAware(gate, replicaLoad, choice.kv_cache_limit);
  }
}

export class DeploymentRoute {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  readonly slot: number;
  readonly replicas: readonly ReplicaRoute[];
  readonly upstream: UpstreamOptions;
  readonly maxBodyBytes: number;
  readonly policies: PoliciesConfig;
  readonly buckets: readonly BucketRef[];
  readonly breaker: BreakerOptions | null;
  /** Chooses among `replicas` (built with this table: the replicas never change under it). */
  readonly balancer: Balancer<ReplicaRoute>;
  /** The balancer learns from response times: tell it each time to first byte (balancer.observe). */
  readonly learnsLatency: boolean;
  readonly stats: RequestStats;
  /** The deployment's response cache and in-flight requests; null when its cache policy is off. */
  readonly cache: RouteCache | null;
  /** The policies a request passes before the balancer; null: none (the direct path). */
  readonly filters: FilterChain | null;
  /** `x-sluice-version` as a response head line: alias responses say which version served them. */
  readonly versionLine: Uint8Array;
  /** The gateway's credential for this deployment's upstream, as a request head line; null: none (the client's pass). */
  readonly credentialLine: string | null;
  /** Its header name: the client's header of that name is not forwarded. */
  readonly credentialName: string;
  /**
   * Deployments that take what this one cannot, in order; null when none is routed. Set
   * once by the compiler, after every route of the table exists.
   */
  fallbacks: readonly DeploymentRoute[] | null = null;
  /** `x-sluice-served-by` as a response head line: a fallback's answer names who gave it. */
  readonly servedByLine: Uint8Array;
  readonly holds: boolean;
  readonly hibernated: boolean;
  readonly wakeFailures: number;
  readonly wakeError: string | null;
  readonly failure: string | null;
  readonly countsArrivals: boolean;
  readonly uuidRequestIds: boolean;
  /** Its prices; null when it has none (its requests are not counted for cost). */
  readonly cost: CostConfig | null;
  /** Its answers' tokens are counted (TokenCounter): for metrics and cost. */
  readonly countsTokens: boolean;
  /** The model name its server knows, as a JSON string (what replaces the body's `model` value); null: the body goes as sent. */
  readonly servedModelJson: Buffer | null;
  /** The body's `model` is rewritten on path routes too (a configured served_model). */
  readonly rewritesPathModel: boolean;
  /** Deployed at, in seconds since the epoch. */
  readonly created: number;
  /** This worker has asked the control plane to wake the deployment (once per route table). */
  wakeAsked = false;

  constructor(
    snap: DeploymentSnapshot, replicas: ReplicaRoute[], stats: RequestStats, shared: SharedState, cache: RouteCache | null, filters: FilterChain | null,
    latency: LatencyMemory,
  ) {
    this.id = snap.id;
    this.model = snap.model;
    this.version = snap.version;
    this.slot = snap.slot;
    this.replicas = Object.freeze(replicas);
    this.upstream = snap.upstream;
    this.maxBodyBytes = snap.maxBodyBytes;
    this.policies = snap.policies;
    this.buckets = snap.buckets;
    const b = snap.policies.breaker;
    this.breaker = b.enabled
      ? Object.freeze({
        consecutiveFailures: b.consecutive_failures, errorThresholdPercentage: b.error_threshold_percentage,
        volumeThreshold: b.volume_threshold, rollingWindowMs: b.window_ms, resetTimeoutMs: b.reset_timeout_ms,
      })
      : null;
    const gate = new ReplicaGate(this.replicas, shared.inflight, shared.holds, shared.breakers, this.breaker, snap.policies.queue.max_inflight_per_replica);
    this.balancer = balancerFor(snap.policies.balancer, gate, latency, shared.replicaLoad);
    this.learnsLatency = snap.policies.balancer.strategy === 'lowest_latency';
    this.stats = stats;
    this.cache = cache;
    this.filters = filters;
    this.versionLine = Buffer.from(`\r\nx-sluice-version: ${snap.version}`, 'latin1');
    this.credentialLine = snap.credential === null ? null : `${snap.credential.name}: ${snap.credential.value}\r\n`;
    this.credentialName = snap.credential?.name ?? '';
    this.servedByLine = Buffer.from(`\r\nx-sluice-served-by: ${snap.id}`, 'latin1');
    this.holds = snap.holds;
    this.hibernated = snap.hibernated;
    this.wakeFailures = snap.wakeFailures;
    this.wakeError = snap.wakeError;
    this.failure = snap.failure;
    this.countsArrivals = snap.countsArrivals;
    this.uuidRequestIds = snap.uuidRequestIds;
    const c = snap.cost;
    this.countsTokens = snap.countsTokens;
    this.cost = c.per_1k_input_tokens > 0 || c.per_1k_output_tokens > 0 || c.per_request > 0 || c.per_replica_hour > 0 ? c : null;
    this.servedModelJson = snap.servedModel === null ? null : Buffer.from(JSON.stringify(snap.servedModel));
    this.rewritesPathModel = snap.servedModel !== null && snap.servedModelOnPaths;
    this.created = snap.created;
  }
}

/** A client API key as the data plane knows it. */
export class KeyRoute {
  readonly name: string;
  readonly digest: string;
  readonly scope: KeyScope;
  readonly buckets: readonly BucketRef[];
  readonly #deploymentBuckets: ReadonlyMap<string, readonly BucketRef[]>;

  constructor(snap: KeySnapshot) {
    this.name = snap.name;
    this.digest = snap.digest;
    this.scope = new KeyScope(snap.scope);
    this.buckets = snap.buckets;
    this.#deploymentBuckets = new Map(Object.entries(snap.deploymentBuckets));
  }

  bucketsOn(deploymentId: string): readonly BucketRef[] {
    return this.#deploymentBuckets.get(deploymentId) ?? EMPTY_BUCKETS;
  }
}

const EMPTY_BUCKETS: readonly BucketRef[] = Object.freeze([]);

/** `/<model>/...`: splits traffic across the model's versions by weight. */
export class AliasRoute {
  readonly model: string;
  /** Sticky by this request header's value; '' by the API key's name; null: every request is drawn at random. */
  readonly stickyHeader: string | null;
  readonly #targets: readonly DeploymentRoute[];
  readonly #weights: readonly number[];
  readonly #cumulative: Float64Array;
  readonly #seeds: Uint32Array;

  constructor(model: string, targets: DeploymentRoute[], weights: number[], stickyHeader: string | null) {
    this.model = model;
    this.stickyHeader = stickyHeader;
    this.#targets = Object.freeze(targets);
    this.#weights = Object.freeze(weights);
    this.#cumulative = cumulativeWeights(weights);
    this.#seeds = Uint32Array.from(targets, (t) => stickyHash(t.id));
  }

  /** The versions it splits traffic across. */
  get targets(): readonly DeploymentRoute[] {
    return this.#targets;
  }

  pick(): DeploymentRoute | undefined {
    return pickWeighted(this.#targets, this.#cumulative);
  }

  /** The version for sticky `key` (a header value or a key name); drawn at random when the request has none. */
  pickFor(key: string): DeploymentRoute | undefined {
    if (key === '') return this.pick();
    return pickSticky(this.#targets, this.#weights, this.#seeds, stickyHash(key));
  }
}

export type Route = DeploymentRoute | AliasRoute;

export class RouteTable {
  readonly version: number;
  readonly #routes: Map<string, Route>;
  readonly #keys: Map<string, KeyRoute>;
  readonly #draining: ReadonlySet<string>;
  readonly deployments: readonly DeploymentRoute[];
  /** False when no API key is configured: requests skip hashing. */
  readonly hasKeys: boolean;
  /** What /readyz says (RouteTableSnapshot.ready). */
  readonly ready: boolean;
  readonly maxBufferedBodyBytes: number;
  readonly maxBufferedBytes: number;

  constructor(
    version: number, ready: boolean, routes: Map<string, Route>, deployments: DeploymentRoute[], keys: Map<string, KeyRoute>, maxBufferedBodyBytes: number, maxBufferedBytes: number,
    draining: ReadonlySet<string>,
  ) {
    this.version = version;
    this.#draining = draining;
    this.ready = ready;
    this.maxBufferedBodyBytes = maxBufferedBodyBytes;
    this.maxBufferedBytes = maxBufferedBytes;
    this.#routes = routes;
    this.#keys = keys;
    this.hasKeys = keys.size > 0;
    this.deployments = Object.freeze(deployments);
    Object.freeze(this);
  }

  /** `segment` is the first path segment: `<model>-<version>` or `<model>`. */
  match(segment: string): Route | undefined {
    return this.#routes.get(segment);
  }

  /**
   * The route a request body's `model` names, by the rules of paths: `<model>-<version>`
   * or the `<model>` alias; Ollama's `<model>:<tag>` is version `tag`, `:latest` the alias.
   */
  forModel(name: string): Route | undefined {
    const route = this.#routes.get(name);
    if (route !== undefined) return route;
    const colon = name.lastIndexOf(':');
    if (colon <= 0) return undefined;
    const model = name.slice(0, colon);
    const tag = name.slice(colon + 1);
    return tag === 'latest' ? this.#routes.get(model) : this.deployment(`${model}-${tag}`);
  }

  /** Every alias, for the front door's model lists. */
  aliases(): AliasRoute[] {
    const out: AliasRoute[] = [];
    for (const route of this.#routes.values()) if (route instanceof AliasRoute) out.push(route);
    return out;
  }

  /** The deployment of this id, not an alias of the same spelling. */
  deployment(id: string): DeploymentRoute | undefined {
    const route = this.#routes.get(id);
    return route instanceof DeploymentRoute ? route : undefined;
  }

  /**
   * Being undeployed: routed no more, but its replicas run (and their connection pools stay
   * open) until the requests it took, in flight or waiting for a replica, are done.
   */
  isDraining(id: string): boolean {
    return this.#draining.has(id);
  }

  keyByDigest(digest: string): KeyRoute | undefined {
    return this.#keys.get(digest);
  }

  static readonly empty = new RouteTable(0, false, new Map(), [], new Map(), 0, 0, new Set());
}

/** A deployment's filter chain; `keysLimit`: some API key has rate limits. */
export type FiltersOf = (deployment: DeploymentSnapshot, keysLimit: boolean) => FilterChain | null;

/**
 * Per-worker state that outlives route tables: connection pools by origin and request
 * stats by deployment (until the deployment is gone), so a new snapshot keeps warm
 * sockets and counters.
 */
export class RouteTableCompiler {
  readonly #pools = new Map<string, UpstreamPool>();
  readonly #stats = new Map<string, RequestStats>();
  // Like stats, kept across snapshots: a new route table must not empty the cache.
  readonly #caches = new Map<string, RouteCache>();
  /** Each deployment's pools as last routed: a draining one's stay open for the requests it still serves. */
  readonly #poolKeys = new Map<string, readonly string[]>();
  /** Replica response times, for lowest_latency: they outlive route tables. */
  readonly #latency = new LatencyMemory();
  readonly #shared: SharedState;
  /** The worker's client of the shared cache tier; null when no Redis is configured. */
  readonly #sharedCache: RedisCache | null;
  readonly #filtersOf: FiltersOf;

  constructor(shared: SharedState, sharedCache: RedisCache | null, filtersOf: FiltersOf) {
    this.#shared = shared;
    this.#sharedCache = sharedCache;
    this.#filtersOf = filtersOf;
  }

  compile(snap: RouteTableSnapshot): RouteTable {
    const routes = new Map<string, Route>();
    const byId = new Map<string, DeploymentRoute>();
    const livePools = new Set<string>();
    const keysLimit = snap.keys.some((k) => k.buckets.length > 0 || Object.values(k.deploymentBuckets).some((b) => b.length > 0));
    for (const d of snap.deployments) {
      const poolKeys: string[] = [];
      const replicas = d.replicas.map((r) => {
        // Deployments on one origin share its connections only with the same limits: the first one's would hold for all.
        const key = `${r.tls ? 'https' : 'http'}://${r.host}:${r.port} ${d.upstream.max_connections} ${d.upstream.keepalive_idle_ms}`;
        livePools.add(key);
        poolKeys.push(key);
        let pool = this.#pools.get(key);
        if (pool === undefined) {
          pool = new UpstreamPool({ host: r.host, port: r.port, tls: r.tls, maxConnections: d.upstream.max_connections, idleMs: d.upstream.keepalive_idle_ms });
          this.#pools.set(key, pool);
        }
        return new ReplicaRoute(r, pool);
      });
      this.#poolKeys.set(d.id, poolKeys);
      let stats = this.#stats.get(d.id);
      if (stats === undefined) {
        stats = new RequestStats();
        this.#stats.set(d.id, stats);
      }
      for (const r of d.replicas) this.#latency.claim(r.slot, r.id);
      const route = new DeploymentRoute(d, replicas, stats, this.#shared, this.#cacheOf(d, stats), this.#filtersOf(d, keysLimit), this.#latency);
      byId.set(d.id, route);
      routes.set(d.id, route);
    }
    for (const d of snap.deployments) {
      const fallbacks = d.fallbacks.map((id) => byId.get(id)).filter((r) => r !== undefined);
      if (fallbacks.length > 0) byId.get(d.id)!.fallbacks = Object.freeze(fallbacks);
    }
    for (const a of snap.aliases) {
      // A pinned `<model>-<version>` wins over an alias of the same spelling, and the
      // gateway port's probes over a model of their name stored before such names were refused.
      if (routes.has(a.model) || a.model === 'readyz' || a.model === 'healthz') continue;
      const targets: DeploymentRoute[] = [];
      const weights: number[] = [];
      for (const t of a.targets) {
        const d = byId.get(t.deployment);
        if (d !== undefined && t.weight > 0) {
          targets.push(d);
          weights.push(t.weight);
        }
      }
      routes.set(a.model, new AliasRoute(a.model, targets, weights, a.stickyHeader));
    }
    const draining = new Set(snap.draining);
    for (const id of draining) for (const key of this.#poolKeys.get(id) ?? []) livePools.add(key);
    for (const id of this.#poolKeys.keys()) if (!byId.has(id) && !draining.has(id)) this.#poolKeys.delete(id);
    // Pools of replicas that left the table: idle sockets close now, busy ones when done.
    for (const [key, pool] of this.#pools) {
      if (!livePools.has(key)) {
        pool.close();
        this.#pools.delete(key);
      }
    }
    for (const id of this.#caches.keys()) if (!byId.has(id)) this.#caches.delete(id);
    // As /v1/stats forgets an undeployed deployment, so does /metrics; a redeploy of its id starts from zero.
    for (const id of this.#stats.keys()) if (!byId.has(id) && !draining.has(id)) this.#stats.delete(id);
    const keys = new Map(snap.keys.map((k) => [k.digest, new KeyRoute(k)] as const));
    return new RouteTable(snap.version, snap.ready, routes, [...byId.values()], keys, snap.maxBufferedBodyBytes, snap.maxBufferedBytes, draining);
  }

  #cacheOf(d: DeploymentSnapshot, stats: RequestStats): RouteCache | null {
    const policy = d.policies.cache;
    let cache = this.#caches.get(d.id);
    if (policy === undefined || !policy.enabled) {
      this.#caches.delete(d.id);
      return null;
    }
    if (cache === undefined || cache.specDigest !== d.specDigest) {
      cache = new RouteCache(d.id, d.specDigest, policy, stats, this.#sharedCache);
      this.#caches.set(d.id, cache);
    } else cache.reconfigure(policy, this.#sharedCache);
    return cache;
  }

  get pools(): IterableIterator<UpstreamPool> {
    return this.#pools.values();
  }

  statsSnapshot(): Record<string, ReturnType<RequestStats['snapshot']>> {
    const out: Record<string, ReturnType<RequestStats['snapshot']>> = {};
    for (const [id, s] of this.#stats) out[id] = s.snapshot();
    return out;
  }
}
