import type { DeploymentConfig, LimitsConfig } from '../config/index.js';

/** What a deployment was asked to be: enough to bring it back after a restart. */
export interface DesiredDeployment {
  readonly spec: DeploymentConfig;
  readonly created_at: string;
}

/** A client API key added through the admin API: its SHA-256 digest, never the key. */
export interface StoredApiKey {
  readonly name: string;
  readonly key_sha256: string;
  readonly deployments: readonly string[];
  readonly limits: LimitsConfig;
  readonly deployment_limits: LimitsConfig;
  readonly created_at: string;
}

/** Where the processes of this gateway host run: for adoption after a crash. Host-local. */
export interface ReplicaRecord {
  readonly replica: string;
  readonly port: number;
  readonly pid: number;
  readonly pgid: number;
}

/** Requests with the same header value, or the same API key, go to the same version. */
export type StickySpec = { readonly by: 'header'; readonly name: string } | { readonly by: 'api_key' };

/** Version -> weight for a model's alias route. */
export type TrafficWeights = Readonly<Record<string, number>>;

/** One change of a model's traffic, as GET /v1/models/{model}/events shows it. */
export interface TrafficEvent {
  readonly at: string;
  readonly who: 'api' | 'config' | 'gateway' | 'rollout';
  readonly action: 'traffic' | 'promote' | 'rollback' | 'fallback' | 'version_removed' | 'config';
  readonly from: TrafficWeights | null;
  readonly to: TrafficWeights | null;
  readonly why: string;
}

/** A model's traffic as set through the admin API, with its history: followed by every instance. */
export interface StoredTraffic {
  readonly model: string;
  readonly weights: TrafficWeights | null;
  readonly sticky: StickySpec | null;
  readonly stable: string | null;
  /** The config's `traffic` entry for the model (canonical JSON, '' for none) when this was set: a changed entry wins over it. */
  readonly config_digest: string;
  readonly events: readonly TrafficEvent[];
  readonly updated_at: string;
}

/**
 * Changes are per deployment, never a rewrite of the whole list: several gateway
 * instances share one Redis, and one that does not know a deployment must not drop it.
 */
export interface DesiredStateStore {
  readonly kind: 'file' | 'redis';
  load(): Promise<DesiredDeployment[]>;
  /** Adds or replaces one deployment (by `<model>-<version>`); the others stay as stored. */
  put(deployment: DesiredDeployment): Promise<void>;
  /** Removes one deployment by id (`<model>-<version>`). */
  remove(id: string): Promise<void>;
  /** API keys added through the admin API, kept apart from deployments and changed one at a time too. */
  loadKeys(): Promise<StoredApiKey[]>;
  putKey(key: StoredApiKey): Promise<void>;
  removeKey(name: string): Promise<void>;
  /** Models' traffic set through the admin API, one record per model. */
  loadTraffic(): Promise<StoredTraffic[]>;
  putTraffic(traffic: StoredTraffic): Promise<void>;
  close(): Promise<void>;
}

export class StateError extends Error {
  readonly code = 'SLUICE_ERR_STATE';
}
