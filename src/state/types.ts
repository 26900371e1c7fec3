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
  close(): Promise<void>;
}

export class StateError extends Error {
  readonly code = 'SLUICE_ERR_STATE';
}
