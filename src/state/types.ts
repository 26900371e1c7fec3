import type { DeploymentConfig } from '../config/index.js';

/** What a deployment was asked to be: enough to bring it back after a restart. */
export interface DesiredDeployment {
  readonly spec: DeploymentConfig;
  readonly created_at: string;
}

/** Where the processes of this gateway host run: for adoption after a crash. Host-local. */
export interface ReplicaRecord {
  readonly replica: string;
  readonly port: number;
  readonly pid: number;
  readonly pgid: number;
}

export interface DesiredStateStore {
  readonly kind: 'file' | 'redis';
  load(): Promise<DesiredDeployment[]>;
  save(deployments: readonly DesiredDeployment[]): Promise<void>;
  close(): Promise<void>;
}

export class StateError extends Error {
  readonly code = 'SLUICE_ERR_STATE';
}
