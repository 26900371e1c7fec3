// Messages between the control plane and the data-plane workers: the route table goes
// down, stats and lifecycle events come up. Nothing else crosses.

import type { DependenciesConfig, DependencyBreakerConfig, TracingConfig } from '../config/index.js';
import type { BreakerSnapshot } from '../dependencies/index.js';
import type { SpanCounts, StatsSnapshot } from '../telemetry/index.js';
import type { TlsFiles } from './listener.js';
import type { RouteTableSnapshot } from './route-table.js';
import type { UpstreamTransport } from './upstream/index.js';

/** Shared memory laid out once by the control plane; see SharedState. */
export interface SharedBuffers {
  readonly inflight: SharedArrayBuffer;
  readonly breakers: { readonly ints: SharedArrayBuffer; readonly floats: SharedArrayBuffer };
  readonly buckets: { readonly floats: SharedArrayBuffer; readonly locks: SharedArrayBuffer };
  readonly deployments: SharedArrayBuffer;
  readonly replicaLoad: SharedArrayBuffer;
  /** What each worker holds of the shared counts (WorkerHolds), by worker index. */
  readonly holds: { readonly buffer: SharedArrayBuffer; readonly replicaSlots: number; readonly deploymentSlots: number };
}

/** Config log.access*: each worker writes its own access lines. */
export interface AccessLogSettings {
  /** A line for every request; false: only for failures. */
  readonly all: boolean;
  readonly bufferBytes: number;
  readonly maxBufferBytes: number;
  readonly flushMs: number;
  readonly sample: number;
}

/** Log lines (access lines and others) a worker has written and dropped (stdout too slow), since it started. */
export interface LogCounts {
  readonly lines: number;
  readonly dropped: number;
}

export interface WorkerInit {
  readonly workerIndex: number;
  readonly host: string;
  readonly port: number;
  /**
   * The first worker: it checks that no other process listens on the port before it binds
   * (port-probe.ts); the others start once it listens, and join its socket's group.
   */
  readonly probe: boolean;
  readonly logLevel: string;
  readonly accessLog: AccessLogSettings;
  readonly forwardedFor: boolean;
  /** listen.cors_origins: who may call the front door from a browser (proxy/cors.ts). */
  readonly corsOrigins: readonly string[];
  /** Host names allowed beside the local ones; null: any Host (the gateway is not bound to loopback, or listen.allowed_hosts has '*'). */
  readonly allowedHosts: readonly string[] | null;
  /** What reads client requests (config listen.front_end): uWS, or the node front end (plain HTTP). */
  readonly frontEnd: 'uws' | 'node';
  /** The node front end closes a client connection that sends nothing for this long (config listen.client_idle_timeout_ms). */
  readonly clientIdleTimeoutMs: number;
  /** The node front end answers 408 to a request head not whole this long after its first byte (config listen.client_header_timeout_ms). */
  readonly clientHeaderTimeoutMs: number;
  /** HTTPS on the gateway port (config listen.tls); null: plain HTTP. */
  readonly tls: TlsFiles | null;
  /** The Strict-Transport-Security value every response carries (config listen.hsts); null: none. */
  readonly hsts: string | null;
  readonly shared: SharedBuffers;
  /**
   * Rate limits in Redis (shared by instances) instead of the shared in-memory buckets, and
   * the shared tier of the response cache; each with its own command timeout and breaker.
   */
  readonly redis: {
    readonly url: string; readonly timeoutMs: number; readonly cacheTimeoutMs: number;
    readonly breakers: Pick<DependenciesConfig['redis'], 'rate_limit' | 'cache'>;
  } | null;
  readonly rateLimitFailOpen: boolean;
  /** Config `tracing` when enabled, and the breaker around its exports: the worker exports its own spans; null: tracing off. */
  readonly tracing: { readonly config: TracingConfig; readonly breaker: DependencyBreakerConfig } | null;
  readonly snapshot: RouteTableSnapshot;
}

export type ToWorker =
  | { readonly type: 'routes'; readonly snapshot: RouteTableSnapshot }
  | { readonly type: 'stats'; readonly id: number }
  /** Shutdown begins: /readyz answers 503, requests (new ones too) are still served. */
  | { readonly type: 'drain' }
  /** Read the certificate files again (SIGHUP, or they changed); connections open go on. */
  | { readonly type: 'tls-reload' }
  | { readonly type: 'stop'; readonly graceMs: number };

export type FromWorker =
  /** `native`: the uWS binary is in use; `transport`: how its upstream connections move bytes. */
  | { readonly type: 'listening'; readonly workerIndex: number; readonly native: boolean; readonly binary: string; readonly transport: UpstreamTransport }
  | { readonly type: 'listen-failed'; readonly workerIndex: number; readonly message: string }
  /** `ready`: what the worker's /readyz now answers. */
  | { readonly type: 'routes-applied'; readonly workerIndex: number; readonly version: number; readonly ready: boolean }
  /** `unroutedRefusals`: the worker's refusals of requests no deployment owns, by code. */
  | { readonly type: 'stats'; readonly id: number; readonly workerIndex: number; readonly deployments: Record<string, StatsSnapshot>; readonly unroutedRefusals: Record<string, number>; readonly active: number; readonly log: LogCounts; readonly spans: SpanCounts; readonly breakers: BreakerSnapshot[] }
  | { readonly type: 'draining'; readonly workerIndex: number }
  /** `error`: why the certificate in use was kept; null: new connections get the new one. */
  | { readonly type: 'tls-reloaded'; readonly workerIndex: number; readonly error: string | null }
  /** The listen socket is closed; `active`: requests still in flight. */
  | { readonly type: 'closed'; readonly workerIndex: number; readonly active: number }
  /** `cut`: requests still in flight when the grace period ran out (their connections are closed). */
  | { readonly type: 'stopped'; readonly workerIndex: number; readonly cut: number }
  /** A request is held for a hibernated deployment: start it (each worker asks once per route table). */
  | { readonly type: 'wake'; readonly workerIndex: number; readonly deployment: string };
