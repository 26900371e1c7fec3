// The admin API's answers, as far as the CLI reads them (the full shapes are in
// src/admin/openapi.ts; --json prints them whole).

export interface ReplicaView {
  id: string;
  port: number;
  state: string;
  pid: number | null;
  restarts: number;
  breaker: string | null;
  last_error: string | null;
  health: { status: string; last_error: string | null } | null;
}

export interface DeploymentView {
  id: string;
  model: string;
  version: string;
  runtime: string;
  state: string;
  source: string;
  route: string;
  created_at: string | null;
  last_error: string | null;
  served_model: string | null;
  hibernated_since: string | null;
  /** One host's instances sharing a Redis: who runs the servers (owner: this instance). */
  shared: { role: 'owner' | 'borrower'; owner: string | null } | null;
  replicas: ReplicaView[];
}

export interface LogLineView {
  replica: string;
  stream: string;
  line: string;
  at: number;
}

export interface RolloutCheckView {
  at: string;
  step: number;
  weight: number;
  verdict: string;
  why: string;
}

export interface RolloutView {
  canary: string;
  stable: string;
  status: string;
  step: number;
  weight: number;
  failed_checks: number;
  started_at: string;
  finished_at: string | null;
  spec: { steps: number[]; interval_s: number };
  checks: RolloutCheckView[];
}

export interface ModelView {
  model: string;
  versions: Array<{ version: string; deployment: string; state: string; ready_replicas: number; weight: number | null; share: number }>;
  weights: Record<string, number> | null;
  stable: string | null;
  sticky: { by: 'header'; name: string } | { by: 'api_key' } | null;
  source: string;
  rollout: RolloutView | null;
}

export interface KeyView {
  name: string;
  label: string;
  source: string;
  deployments: string[];
  /** Over all its deployments. */
  limits: Record<string, number>;
  /** On each deployment its scope allows. */
  deployment_limits: Record<string, number>;
  created_at: string | null;
  /** Only in the answer that generated the key. */
  key?: string;
}

interface CostFigures {
  id: string; running_hours: number; hibernated_hours: number; predictions: number; input_tokens: number; output_tokens: number;
  cost_usd: { total: number }; cost_per_1k_predictions_usd: number | null; saved_by_hibernation_usd: number;
}

export interface CostsView {
  currency: string;
  deployments: Array<CostFigures & { state: string }>;
  /** Undeployed since the gateway started, newest first. */
  removed: Array<CostFigures & { removed_at: string }>;
}

/** GET /v1/stats: cumulative figures per deployment since the gateway started. */
export interface StatsView {
  at: string;
  deployments: DeploymentStats[];
}

export interface DeploymentStats {
  deployment: string;
  model: string;
  version: string;
  state: string;
  requests: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  ttft_p50_ms: number | null;
  ttft_p99_ms: number | null;
  input_tokens: number;
  output_tokens: number;
  in_flight: number;
  queued: number;
}
