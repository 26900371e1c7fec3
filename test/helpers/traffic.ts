// The traffic API's views (GET /v1/models/{model} and its events), as the tests read them.

import { adminClient, type AdminClient, type PidLog } from './control.js';
import { startGateway, type Gateway } from './procs.js';

/** One gateway of a test with several instances on one Redis. */
export interface Instance {
  gw: Gateway;
  admin: AdminClient;
  name: string;
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
