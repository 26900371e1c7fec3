// The route table: published by the control plane as plain, structured-clonable data
// (RouteTableSnapshot), compiled once per worker into an immutable RouteTable. A request
// reads the table reference once when it starts and keeps it until it ends (Envoy's RDS
// model), so a swap never disturbs requests in flight.

import { cumulativeWeights, pickReplica, pickWeighted } from '../balancer/index.js';
import type { UpstreamOptions } from '../config/index.js';
import { RequestStats } from '../telemetry/index.js';
import { UpstreamPool } from './upstream/index.js';

export interface ReplicaSnapshot {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** Path prefix of a remote URL (`http://h/base` -> `/base`), '' for local replicas. */
  readonly basePath: string;
  /** Slot in the shared in-flight counters; stable for the replica's lifetime. */
  readonly slot: number;
}

export interface DeploymentSnapshot {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  /** Ready replicas only: a replica that is starting or failed gets no traffic. */
  readonly replicas: readonly ReplicaSnapshot[];
  readonly upstream: UpstreamOptions;
  readonly maxBodyBytes: number;
}

export interface AliasSnapshot {
  readonly model: string;
  readonly targets: ReadonlyArray<{ readonly deployment: string; readonly weight: number }>;
}

export interface RouteTableSnapshot {
  readonly version: number;
  readonly deployments: readonly DeploymentSnapshot[];
  readonly aliases: readonly AliasSnapshot[];
}

export class ReplicaRoute {
  readonly id: string;
  readonly slot: number;
  readonly pool: UpstreamPool;
  /** Host header for the upstream: Ollama rejects foreign Host values. */
  readonly hostHeader: string;
  readonly basePath: string;
  readonly origin: string;

  constructor(snap: ReplicaSnapshot, pool: UpstreamPool) {
    this.id = snap.id;
    this.slot = snap.slot;
    this.pool = pool;
    this.hostHeader = snap.host.includes(':') ? `[${snap.host}]:${snap.port}` : `${snap.host}:${snap.port}`;
    this.basePath = snap.basePath;
    this.origin = `http://${this.hostHeader}${snap.basePath}`;
  }
}

export class DeploymentRoute {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  readonly replicas: readonly ReplicaRoute[];
  readonly upstream: UpstreamOptions;
  readonly maxBodyBytes: number;
  readonly stats: RequestStats;
  readonly #inflight: Int32Array;

  constructor(snap: DeploymentSnapshot, replicas: ReplicaRoute[], stats: RequestStats, inflight: Int32Array) {
    this.id = snap.id;
    this.model = snap.model;
    this.version = snap.version;
    this.replicas = Object.freeze(replicas);
    this.upstream = snap.upstream;
    this.maxBodyBytes = snap.maxBodyBytes;
    this.stats = stats;
    this.#inflight = inflight;
  }

  pickReplica(): ReplicaRoute | undefined {
    return pickReplica(this.replicas, this.#inflight);
  }
}

/** `/<model>/...`: splits traffic across the model's versions by weight. */
export class AliasRoute {
  readonly model: string;
  readonly #targets: readonly DeploymentRoute[];
  readonly #cumulative: Float64Array;

  constructor(model: string, targets: DeploymentRoute[], weights: number[]) {
    this.model = model;
    this.#targets = Object.freeze(targets);
    this.#cumulative = cumulativeWeights(weights);
  }

  pick(): DeploymentRoute | undefined {
    return pickWeighted(this.#targets, this.#cumulative);
  }
}

export type Route = DeploymentRoute | AliasRoute;

export class RouteTable {
  readonly version: number;
  readonly #routes: Map<string, Route>;
  readonly deployments: readonly DeploymentRoute[];

  constructor(version: number, routes: Map<string, Route>, deployments: DeploymentRoute[]) {
    this.version = version;
    this.#routes = routes;
    this.deployments = Object.freeze(deployments);
    Object.freeze(this);
  }

  /** `segment` is the first path segment: `<model>-<version>` or `<model>`. */
  match(segment: string): Route | undefined {
    return this.#routes.get(segment);
  }

  static readonly empty = new RouteTable(0, new Map(), []);
}

/**
 * Per-worker state that outlives route tables: connection pools by origin and request
 * stats by deployment, so a new snapshot keeps warm sockets and counters.
 */
export class RouteTableCompiler {
  readonly #pools = new Map<string, UpstreamPool>();
  readonly #stats = new Map<string, RequestStats>();
  readonly #inflight: Int32Array;

  constructor(inflight: Int32Array) {
    this.#inflight = inflight;
  }

  compile(snap: RouteTableSnapshot): RouteTable {
    const routes = new Map<string, Route>();
    const byId = new Map<string, DeploymentRoute>();
    const livePools = new Set<string>();
    for (const d of snap.deployments) {
      const replicas = d.replicas.map((r) => {
        const key = `${r.host}:${r.port}`;
        livePools.add(key);
        let pool = this.#pools.get(key);
        if (pool === undefined) {
          pool = new UpstreamPool({ host: r.host, port: r.port, maxConnections: d.upstream.max_connections, idleMs: d.upstream.keepalive_idle_ms });
          this.#pools.set(key, pool);
        }
        return new ReplicaRoute(r, pool);
      });
      let stats = this.#stats.get(d.id);
      if (stats === undefined) {
        stats = new RequestStats();
        this.#stats.set(d.id, stats);
      }
      const route = new DeploymentRoute(d, replicas, stats, this.#inflight);
      byId.set(d.id, route);
      routes.set(d.id, route);
    }
    for (const a of snap.aliases) {
      // A pinned `<model>-<version>` wins over an alias of the same spelling.
      if (routes.has(a.model)) continue;
      const targets: DeploymentRoute[] = [];
      const weights: number[] = [];
      for (const t of a.targets) {
        const d = byId.get(t.deployment);
        if (d !== undefined && t.weight > 0) {
          targets.push(d);
          weights.push(t.weight);
        }
      }
      routes.set(a.model, new AliasRoute(a.model, targets, weights));
    }
    // Pools of replicas that left the table: idle sockets close now, busy ones when done.
    for (const [key, pool] of this.#pools) {
      if (!livePools.has(key)) {
        pool.close();
        this.#pools.delete(key);
      }
    }
    return new RouteTable(snap.version, routes, [...byId.values()]);
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
