// Helpers for the data-plane policy tests (test/policy): a port nobody listens on, a
// bounded-concurrency runner, simulator tuning by port, the admin view of breakers, and
// the small request shapes these tests send again and again.

import { request } from 'node:http';
import { connect } from 'node:net';
import { httpRequest, metric, type Reply, type RequestOptions } from './http.js';
import { metricsText, sleep, type Gateway } from './procs.js';

/**
 * `port` (one of the test file's own, outside its gateways' allocation range, so that
 * nothing else binds it), checked to refuse connections: a replica that is down.
 */
export function refusingPort(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      reject(new Error(`something listens on 127.0.0.1:${port}; the test needs it closed`));
    });
    sock.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(port) : reject(err)));
  });
}

/** Runs `count` calls of `fn`, at most `concurrency` at a time; results in call order. */
export async function pool<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(count, concurrency) }, async () => {
    while (next < count) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

/** POST /_sim/config on the simulator listening on `port`. */
export async function simConfig(port: number, tunables: Record<string, unknown>): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${port}/_sim/config`, { method: 'POST', body: JSON.stringify(tunables), headers: { 'content-type': 'application/json' } });
  if (r.status !== 200) throw new Error(`sim ${port} config failed: ${r.status} ${await r.text()}`);
}

export async function simReset(port: number): Promise<void> {
  await fetch(`http://127.0.0.1:${port}/_sim/reset`, { method: 'POST' });
}

export interface PolicyReplicaView {
  id: string;
  port: number;
  state: string;
  breaker: string | null;
}

/** GET /v1/deployments/{id} from the admin API: its policies and replicas with breaker states. */
export async function deploymentView(gw: Gateway, id: string): Promise<{ id: string; policies: Record<string, any>; replicas: PolicyReplicaView[] }> {
  const r = await fetch(`${gw.adminUrl}/v1/deployments/${encodeURIComponent(id)}`);
  if (r.status !== 200) throw new Error(`GET /v1/deployments/${id}: ${r.status} ${await r.text()}`);
  return (await r.json()) as { id: string; policies: Record<string, any>; replicas: PolicyReplicaView[] };
}

/** One sample of a gateway metric (summed over labels not given). */
export async function gwMetric(gw: Gateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metric(await metricsText(gw), name, labels);
}

/** A non-streamed Ollama generation: the request the simulator's `status` tunable applies to. */
export function generate(gw: Gateway, deployment: string, opts: RequestOptions = {}): Promise<Reply> {
  return httpRequest(`${gw.url}/${deployment}/api/generate`, {
    method: 'POST',
    body: '{"model":"demo","prompt":"hello there","stream":false}',
    ...opts,
    headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
  });
}

/** The parsed gateway error body, or null when the body is not `{"error":{...}}`. */
export function errorOf(r: Reply): { code: string; message: string; request_id: string } | null {
  try {
    const body = JSON.parse(r.body) as { error?: { code: string; message: string; request_id: string } };
    return body.error !== undefined && typeof body.error.code === 'string' ? body.error : null;
  } catch {
    return null;
  }
}

/** Counts of replies by status, e.g. `{200: 10, 429: 20}`. */
export function byStatus(replies: readonly Reply[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const r of replies) out[r.status] = (out[r.status] ?? 0) + 1;
  return out;
}

/** Polls the gateway's metrics until `pred` holds for the sample, or throws after `timeoutMs`. */
export async function waitMetric(gw: Gateway, name: string, labels: Record<string, string>, pred: (v: number) => boolean, timeoutMs = 5_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let v = NaN;
  for (;;) {
    v = await gwMetric(gw, name, labels);
    if (pred(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting on ${name}${JSON.stringify(labels)} (last value ${v})`);
    await sleep(20);
  }
}

/**
 * Keeps one slow request (`/_sim/sleep`) in flight on the replica served by `sim`, so that
 * least-outstanding-requests picks the other replica first. A hold that lands on another
 * replica is aborted (the gateway aborts its upstream at once) and sent again.
 * Returns a function that ends the hold.
 */
export async function holdReplica(gw: Gateway, deployment: string, sim: { stats(): Promise<{ active: number }> }, ms = 30_000): Promise<() => void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const before = (await sim.stats()).active;
    const req = request(`${gw.url}/${deployment}/_sim/sleep?ms=${ms}`, { agent: false });
    req.on('error', () => undefined);
    req.end();
    const deadline = Date.now() + 2_000;
    let landed = false;
    while (Date.now() < deadline) {
      await sleep(20);
      if ((await sim.stats()).active > before) {
        landed = true;
        break;
      }
    }
    if (landed) return () => req.destroy();
    req.destroy();
    await sleep(50);
  }
  throw new Error(`could not hold a request on the wanted replica of ${deployment}`);
}
