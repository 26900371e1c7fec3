// The traffic API's views (GET /v1/models/{model} and its events), as the tests read them.

import { join } from 'node:path';
import type { Test } from 'tap';
import { adminClient, assertNoServersLeft, PidLog, reapServers, type AdminClient, type RedisServer } from './control.js';
import { startGateway, type Gateway } from './procs.js';

/** One gateway of a test with several instances on one Redis. */
export interface Instance {
  gw: Gateway;
  admin: AdminClient;
  name: string;
}

/**
 * The gateways of a test file that runs several instances on one Redis (set `redis` before
 * the first start): each with its own state_dir, all stopped at the file's teardown with
 * their Redis and every model server they started (ports `replicas`).
 */
export class InstancesOnRedis {
  readonly gateways = new Set<Gateway>();
  readonly pids = new PidLog();
  redis: RedisServer | undefined;
  readonly #dir: string;
  readonly #replicas: { from: number; to: number };

  constructor(t: Test, replicas: { from: number; to: number }) {
    this.#dir = t.testdir();
    this.#replicas = replicas;
    t.teardown(async () => {
      await Promise.all([...this.gateways].map((g) => g.stop()));
      await this.redis?.stop();
      await reapServers(this.pids.pids, replicas);
    });
  }

  /** Starts instance `name`: `config` over its state_dir, the shared Redis and a log without access lines. */
  start(name: string, config: Record<string, unknown>): Promise<Instance> {
    const full = { state_dir: join(this.#dir, `state-${name}`), redis: { url: this.redis!.url }, log: { level: 'info', access: false }, ...config };
    return startInstance(name, full, this.gateways, this.pids);
  }

  /** Starts instance `name` on gateway port `port` (its admin API on the next one), its model servers on `replicas`. */
  startAt(name: string, port: number, replicas: { from: number; to: number }, config: Record<string, unknown>): Promise<Instance> {
    return this.start(name, { listen: { host: '127.0.0.1', port }, admin: { host: '127.0.0.1', port: port + 1 }, ports: replicas, ...config });
  }

  /** Stops every instance (each must exit 0), then checks that none of their model servers is left. */
  async stopAll(t: Test): Promise<void> {
    for (const g of [...this.gateways]) {
      t.equal(await g.stop(), 0, 'exits 0');
      this.gateways.delete(g);
    }
    await assertNoServersLeft(t, this.pids.pids, this.#replicas);
  }
}

/** Starts an instance, adds it to `gateways` (for the teardown) and notes its servers' pids. */
export async function startInstance(name: string, config: Record<string, unknown>, gateways: Set<Gateway>, pids: PidLog): Promise<Instance> {
  const gw = await startGateway(config);
  gateways.add(gw);
  const admin = adminClient(gw.adminUrl);
  pids.note(await admin.list());
  return { gw, admin, name };
}

export interface VersionView {
  version: string;
  deployment: string;
  state: string;
  ready_replicas: number;
  weight: number | null;
  share: number;
}

export interface ModelView {
  model: string;
  versions: VersionView[];
  weights: Record<string, number> | null;
  effective: Record<string, number>;
  stable: string | null;
  sticky: null | { by: string; name?: string };
  source: string;
  fallback: string | null;
  rollout: unknown;
}

export interface TrafficEvent {
  at: string;
  who: string;
  action: string;
  from: unknown;
  to: unknown;
  why: string;
}

/** GET /v1/models/{model}; anything but 200 throws, naming `who` (an instance) when given. */
export async function modelView(admin: AdminClient, model: string, who = ''): Promise<ModelView> {
  const r = await admin.get<ModelView>(`/v1/models/${model}`);
  if (r.status !== 200) throw new Error(`${who === '' ? '' : `${who}: `}GET /v1/models/${model}: ${r.status} ${r.text}`);
  return r.body;
}

/** GET /v1/models/{model}/events, oldest first. */
export async function modelEvents(admin: AdminClient, model: string, who = ''): Promise<TrafficEvent[]> {
  const r = await admin.get<{ model: string; events: TrafficEvent[] }>(`/v1/models/${model}/events`);
  if (r.status !== 200) throw new Error(`${who === '' ? '' : `${who}: `}GET /v1/models/${model}/events: ${r.status} ${r.text}`);
  return r.body.events;
}
