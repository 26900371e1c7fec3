// The control plane's deployments: each one's replicas, their processes and ports, and
// the lifecycle pending -> starting -> ready -> draining -> stopped (or failed). Every
// change that affects routing triggers `onChange`, which publishes a new route table.

import type { Config, DeploymentConfig, UpstreamOptions } from '../config/index.js';
import { SluiceError } from '../errors/index.js';
import { launchPlan, PortAllocator, ReplicaProcess, type LogLine, type ReplicaSpec, type ReplicaState } from '../ports/index.js';
import type { Logger } from '../telemetry/index.js';
import type { RoutableDeployment, RoutableReplica } from './route-snapshot.js';
import type { SlotAllocator } from './slots.js';

export type DeploymentState = 'pending' | 'starting' | 'ready' | 'draining' | 'stopped' | 'failed';

export interface ManagerOptions {
  readonly config: Config;
  readonly ports: PortAllocator;
  readonly slots: SlotAllocator;
  readonly logger: Logger;
  /** Routing-relevant change: publish a new route table. */
  readonly onChange: () => void;
  /** Extra options per runtime (MLflow tracking URI and binary, ...). */
  readonly runtimeEnv?: { readonly mlflowTrackingUri?: string; readonly mlflowBin?: string };
}

export class Replica {
  readonly id: string;
  readonly slot: number;
  host = '127.0.0.1';
  port = 0;
  basePath = '';
  url = '';
  process: ReplicaProcess | null = null;
  state: ReplicaState = 'starting';
  /** Port from our allocator, released when the replica stops. */
  ownedPort: number | null = null;

  constructor(id: string, slot: number) {
    this.id = id;
    this.slot = slot;
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  view(): Record<string, unknown> {
    const p = this.process;
    return {
      id: this.id, url: this.url, port: this.port, state: this.state,
      pid: p?.pid ?? null, restarts: p?.restarts ?? 0, last_error: p?.lastError?.message ?? null,
    };
  }
}

export class Deployment {
  readonly id: string;
  readonly spec: DeploymentConfig;
  readonly upstream: UpstreamOptions;
  readonly replicas: Replica[] = [];
  readonly createdAt = new Date().toISOString();
  #state: DeploymentState = 'pending';
  lastError: string | null = null;

  constructor(spec: DeploymentConfig, defaults: UpstreamOptions) {
    this.id = deploymentId(spec.model, spec.version);
    this.spec = spec;
    this.upstream = Object.freeze({ ...defaults, ...spec.upstream });
  }

  get state(): DeploymentState {
    if (this.#state === 'draining' || this.#state === 'stopped' || this.#state === 'pending') return this.#state;
    if (this.replicas.some((r) => r.ready)) return 'ready';
    if (this.replicas.length > 0 && this.replicas.every((r) => r.state === 'failed')) return 'failed';
    return 'starting';
  }

  set state(s: DeploymentState) {
    this.#state = s;
  }

  view(): Record<string, unknown> {
    const s = this.spec;
    return {
      id: this.id, model: s.model, version: s.version, runtime: s.runtime, state: this.state,
      created_at: this.createdAt, last_error: this.lastError, replicas: this.replicas.map((r) => r.view()),
    };
  }
}

export function deploymentId(model: string, version: string): string {
  return `${model}-${version}`;
}

export class DeploymentManager {
  readonly #o: ManagerOptions;
  readonly #deployments = new Map<string, Deployment>();

  constructor(options: ManagerOptions) {
    this.#o = options;
  }

  get(id: string): Deployment | undefined {
    return this.#deployments.get(id);
  }

  list(): Deployment[] {
    return [...this.#deployments.values()];
  }

  routable(): RoutableDeployment[] {
    const maxBody = this.#o.config.limits.max_body_bytes;
    return this.list().map((d) => ({
      id: d.id, model: d.spec.model, version: d.spec.version, upstream: d.upstream, maxBodyBytes: maxBody,
      routable: d.state !== 'draining' && d.state !== 'stopped',
      replicas: d.replicas.map((r): RoutableReplica => ({ id: r.id, host: r.host, port: r.port, basePath: r.basePath, slot: r.slot, ready: r.ready })),
    }));
  }

  /** Registers the deployment and starts its replicas; resolves once all have been launched. */
  async deploy(spec: DeploymentConfig): Promise<Deployment> {
    const id = deploymentId(spec.model, spec.version);
    if (this.#deployments.has(id)) throw new SluiceError('SLUICE_ERR_CONFLICT', `deployment ${id} exists`);
    const d = new Deployment(spec, this.#o.config.upstream);
    this.#deployments.set(id, d);
    d.state = 'starting';
    try {
      const count = spec.runtime === 'remote' ? spec.urls.length : spec.replicas;
      for (let i = 0; i < count; i++) await this.#startReplica(d, i);
    } catch (err) {
      // Nothing half-registered: stop what started, free ports, forget the deployment.
      await this.#stopReplicas(d);
      this.#deployments.delete(id);
      throw err;
    }
    this.#o.onChange();
    return d;
  }

  async #startReplica(d: Deployment, index: number): Promise<void> {
    const spec = d.spec;
    const replica = new Replica(`${d.id}/${index}`, this.#o.slots.acquire());
    d.replicas.push(replica);
    if (spec.runtime === 'remote') {
      const url = new URL(spec.urls[index]!);
      replica.host = url.hostname.replace(/^\[|\]$/g, '');
      replica.port = Number(url.port || 80);
      replica.basePath = url.pathname.replace(/\/+$/, '');
      replica.url = spec.urls[index]!;
      replica.state = 'ready';
      return;
    }
    const port = await this.#o.ports.acquire();
    replica.ownedPort = port;
    replica.port = port;
    const plan = launchPlan(this.#replicaSpec(spec), { port });
    if (plan.kind !== 'process') throw new Error('unreachable: local runtime produced a remote plan');
    replica.url = plan.url;
    const proc = new ReplicaProcess({
      id: replica.id, argv: plan.argv, env: plan.env, port,
      readinessPath: spec.readiness_path ?? plan.readinessPath, startTimeoutMs: spec.start_timeout_ms,
    });
    replica.process = proc;
    proc.on('state', (state, info) => {
      const wasReady = replica.ready;
      replica.state = state;
      if (state === 'failed') d.lastError = info.error?.message ?? 'replica failed';
      this.#o.logger.info({ deployment: d.id, replica: replica.id, state, pid: info.pid, restarts: info.restarts, error: info.error?.message }, 'replica state');
      if (wasReady !== replica.ready) this.#o.onChange();
    });
    void proc.start().catch((err: unknown) => {
      this.#o.logger.error({ deployment: d.id, replica: replica.id, err }, 'replica start failed');
    });
  }

  #replicaSpec(spec: DeploymentConfig): ReplicaSpec {
    const base = { model: spec.model, version: spec.version, env: spec.env };
    switch (spec.runtime) {
      case 'sim':
        return { ...base, runtime: 'sim', simArgs: spec.args };
      case 'command':
        return { ...base, runtime: 'command', command: spec.command, readinessPath: spec.readiness_path ?? '/' };
      case 'mlflow': {
        const rt = this.#o.runtimeEnv;
        const trackingUri = spec.env.MLFLOW_TRACKING_URI ?? rt?.mlflowTrackingUri;
        if (trackingUri === undefined) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', 'an mlflow deployment needs MLFLOW_TRACKING_URI', { field: 'env.MLFLOW_TRACKING_URI' });
        return { ...base, runtime: 'mlflow', trackingUri, ...(rt?.mlflowBin === undefined ? {} : { mlflowBin: rt.mlflowBin }) };
      }
      case 'ollama':
        return { ...base, runtime: 'ollama' };
      case 'remote':
        throw new Error('unreachable: remote replicas are not launched');
    }
  }

  /** Waits until the deployment is ready or failed (or the timeout passes). */
  waitSettled(id: string, timeoutMs: number): Promise<Deployment | undefined> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve) => {
      const tick = (): void => {
        const d = this.#deployments.get(id);
        if (d === undefined || d.state === 'ready' || d.state === 'failed' || Date.now() > deadline) resolve(d);
        else setTimeout(tick, 50);
      };
      tick();
    });
  }

  /**
   * Drains: the route disappears for new requests at once, requests in flight finish (up to
   * `graceMs`), then the processes stop and their ports are released.
   */
  async undeploy(id: string, graceMs: number): Promise<boolean> {
    const d = this.#deployments.get(id);
    if (d === undefined || d.state === 'draining') return false;
    d.state = 'draining';
    this.#o.onChange();
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && d.replicas.some((r) => this.#o.slots.inflight(r.slot) > 0)) {
      await new Promise((r) => setTimeout(r, 25));
    }
    await this.#stopReplicas(d);
    d.state = 'stopped';
    this.#deployments.delete(id);
    return true;
  }

  async #stopReplicas(d: Deployment): Promise<void> {
    await Promise.all(d.replicas.map(async (r) => {
      await r.process?.stop();
      if (r.ownedPort !== null) this.#o.ports.release(r.ownedPort);
      r.ownedPort = null;
      this.#o.slots.release(r.slot);
    }));
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.list().map((d) => this.#stopReplicas(d)));
    this.#deployments.clear();
  }

  logs(id: string): LogLine[] {
    const d = this.#deployments.get(id);
    if (d === undefined) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment ${id}`);
    return d.replicas.flatMap((r) => r.process?.logs() ?? []);
  }
}
