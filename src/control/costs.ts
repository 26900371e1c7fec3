// GET /v1/costs: what each deployment ran, served and cost, and what undeployed ones had
// cost when they left (a cost report must not lose money spent with the deployment).

import type { StatsSnapshot } from '../telemetry/index.js';
import type { Deployment } from './deployments.js';

export interface CostUsd { replica_hours: number; requests: number; input_tokens: number; output_tokens: number; total: number }

export interface DeploymentCost {
  id: string;
  state: string;
  prices: Deployment['spec']['cost'];
  running_hours: number;
  hibernated_hours: number;
  saved_by_hibernation_usd: number;
  predictions: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: CostUsd;
  cost_per_1k_predictions_usd: number | null;
}

export interface RemovedDeploymentCost extends Omit<DeploymentCost, 'state'> {
  model: string;
  version: string;
  removed_at: string;
}

/** Undeployed deployments kept in GET /v1/costs, newest first; older ones leave (counted in `removed_dropped`). */
export const MAX_REMOVED_COSTS = 1000;

/** What a deployment cost so far, by kind: its replicas' running time, its requests and their tokens. */
export function costUsd(d: Deployment, s: StatsSnapshot | undefined, now: number): CostUsd {
  const replicaHours = d.replicaCostUsd(now);
  const requests = s?.costRequestsUsd ?? 0;
  const input = s?.costInputUsd ?? 0;
  const output = s?.costOutputUsd ?? 0;
  return { replica_hours: replicaHours, requests, input_tokens: input, output_tokens: output, total: replicaHours + requests + input + output };
}

export function deploymentCost(d: Deployment, s: StatsSnapshot | undefined, now: number): DeploymentCost {
  const c = d.spec.cost;
  const hibernatedHours = d.hibernatedMs(now) / 3_600_000;
  const usd = costUsd(d, s, now);
  const predictions = s?.predictions ?? 0;
  return {
    id: d.id, state: d.state, prices: c, running_hours: d.replicaMs(now) / 3_600_000, hibernated_hours: hibernatedHours,
    // What the replicas it would have run while hibernated would have cost.
    saved_by_hibernation_usd: hibernatedHours * c.per_replica_hour * d.spec.replicas,
    predictions, input_tokens: s?.inputTokens ?? 0, output_tokens: s?.outputTokens ?? 0,
    cost_usd: usd, cost_per_1k_predictions_usd: predictions > 0 ? (usd.total / predictions) * 1000 : null,
  };
}

/** The final costs of undeployed deployments, since the gateway started, bounded. */
export class RemovedCosts {
  readonly #entries: RemovedDeploymentCost[] = [];
  #dropped = 0;

  constructor(readonly max = MAX_REMOVED_COSTS) {}

  /** Called once its servers have stopped and its requests have ended, before the workers drop its stats. */
  add(d: Deployment, s: StatsSnapshot | undefined, now: number): void {
    const { state: _state, ...cost } = deploymentCost(d, s, now);
    this.#entries.push({ ...cost, model: d.spec.model, version: d.spec.version, removed_at: new Date(now).toISOString() });
    if (this.#entries.length > this.max) {
      this.#entries.shift();
      this.#dropped++;
    }
  }

  /** Newest first. */
  list(): RemovedDeploymentCost[] {
    return this.#entries.slice().reverse();
  }

  get dropped(): number {
    return this.#dropped;
  }
}
