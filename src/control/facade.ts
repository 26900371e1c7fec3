// The control plane as the admin API sees it. The admin API gets this, never the deployment
// manager or the key registry themselves: it cannot reach what is not its business
// (restore, reconcile, stopAll, slots), and the manager can change shape without admin/
// changing. The composition root (src/serve.ts) builds it; DeploymentManager and
// KeyRegistry satisfy their parts structurally, checked where it is built.

import type { ApiKeyConfig, DeploymentConfig } from '../config/index.js';
import type { HealthCheckView } from '../health/index.js';
import type { LogLine } from '../ports/index.js';
import type { StickySpec, TrafficEvent, TrafficWeights } from '../state/index.js';
import type { ActiveKey } from './api-keys.js';
import type { DeploymentEvent, DeploymentState } from './deployments.js';

export interface ControlPlane {
  readonly deployments: DeploymentControl;
  readonly keys: ApiKeyControl;
  readonly traffic: TrafficControl;
  /** Prometheus text: the workers' request stats, then the control plane's own series. */
  metrics(): Promise<string>;
  /** Per deployment: running and hibernated hours, predictions, tokens, what they cost (GET /v1/costs). */
  costs(): Promise<Record<string, unknown>>;
  /** Per deployment, since the gateway started: requests, errors, latency and TTFT quantiles, tokens, cache, cost, load (GET /v1/stats). */
  stats(): Promise<Record<string, unknown>>;
  /** What the workers answer, not what the deployments are: they get the table a moment later. */
  ready(): boolean;
  /** Whether the data plane runs the native uWebSockets.js binding. */
  native(): boolean;
}

export interface ManagedReplica {
  readonly port: number;
  /** A remote replica's health checks; null for local ones and when disabled. */
  readonly health: { view(): HealthCheckView } | null;
}

export interface ManagedDeployment {
  readonly id: string;
  readonly spec: DeploymentConfig;
  readonly state: DeploymentState;
  readonly lastError: string | null;
  readonly replicas: readonly ManagedReplica[];
  /** Scaling and hibernation changes, oldest first. */
  readonly events: readonly DeploymentEvent[];
}

export interface DeploymentControl {
  list(): readonly ManagedDeployment[];
  get(id: string): ManagedDeployment | undefined;
  /** The admin API's JSON for a deployment this door handed out, with its replicas' breaker states. */
  view(d: ManagedDeployment): Record<string, unknown>;
  /** `api`: made through the admin API, so kept in the desired state. */
  deploy(spec: DeploymentConfig, source: 'api'): Promise<ManagedDeployment>;
  /** Resolves once the deployment is ready, failed or unhealthy, or the timeout passes. */
  waitSettled(id: string, timeoutMs: number): Promise<ManagedDeployment | undefined>;
  /** Drains then stops; false when there was nothing to undeploy. */
  undeploy(id: string, graceMs: number): Promise<boolean>;
  /** Stops the replicas until a request (or wake) starts them again; requests meanwhile are held. */
  hibernate(id: string, why: string, graceMs: number): Promise<ManagedDeployment>;
  wake(id: string, why: string): Promise<ManagedDeployment>;
  logs(id: string): Array<LogLine & { replica: string }>;
}

export interface ApiKeyControl {
  list(): readonly ActiveKey[];
  get(name: string): ActiveKey | undefined;
  /** The key in the clear comes back only when it was generated here. */
  create(spec: ApiKeyConfig): Promise<{ key: ActiveKey; secret: string | null }>;
  remove(name: string): Promise<ActiveKey>;
}

/** Each model's alias traffic (control/traffic.ts); unknown models are SLUICE_ERR_NOT_FOUND. */
export interface TrafficControl {
  /** Models with at least one deployed version, by name. */
  models(): string[];
  view(model: string): Record<string, unknown>;
  events(model: string): readonly TrafficEvent[];
  setWeights(model: string, weights: TrafficWeights, sticky: StickySpec | null, who: 'api', why: string): Promise<void>;
  promote(model: string, version: string, who: 'api', why: string): Promise<void>;
  rollback(model: string, who: 'api', why: string): Promise<void>;
  /** Validates the body (PUT /v1/models/{model}/rollout) and starts the rollout. */
  startRollout(model: string, body: Record<string, unknown>): Promise<void>;
  abortRollout(model: string): Promise<void>;
}
