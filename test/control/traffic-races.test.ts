// Admin changes of one model's traffic sent side by side: each is applied and recorded in
// turn (none is lost, every one is an event, the state is the last event's), and of several
// rollouts started at once exactly one starts.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { reapServers } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19190-19199 belong to this file.
const RANGE = { from: 19190, to: 19199 };
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    deployments: ['1', '2', '3'].map((version) => ({ model: 'race', version, runtime: 'sim' })),
  });
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

interface Traffic { weights: Record<string, number> | null; stable: string | null }
interface TrafficEvent { action: string; to: Record<string, number> | null }

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await httpRequest(`${gw.adminUrl}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: r.body === '' ? {} : (JSON.parse(r.body) as Record<string, unknown>) };
}
const events = async (): Promise<TrafficEvent[]> => (await admin('GET', '/v1/models/race/events')).json['events'] as TrafficEvent[];
const traffic = async (): Promise<Traffic> => (await admin('GET', '/v1/models/race')).json as unknown as Traffic;

t.test('changes sent at once are each applied and recorded, one after another', async (t) => {
  const before = (await events()).length;
  const sets = [{ 1: 10, 2: 90 }, { 1: 20, 2: 80 }, { 1: 30, 3: 70 }, { 2: 40, 3: 60 }, { 1: 50, 3: 50 }];
  const answers = await Promise.all([
    ...sets.map((weights) => admin('PUT', '/v1/models/race/traffic', { weights })),
    admin('POST', '/v1/models/race/promote', { version: '2' }),
  ]);
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200]);
  const after = await events();
  t.equal(after.length - before, 6, 'six changes, six events (each one was recorded)');
  t.equal(after.filter((e) => e.action === 'promote').length >= 1, true, 'the promote among them');
  t.same((await traffic()).weights, after.at(-1)!.to, 'the weights are the last event\'s');
});

t.test('rollouts started at once: exactly one starts, the others are told one is running', async (t) => {
  await admin('POST', '/v1/models/race/promote', { version: '1' });
  const body = { canary: '2', steps: [10, 100], interval_s: 60, min_requests: 1000 };
  const answers = await Promise.all(Array.from({ length: 5 }, () => admin('PUT', '/v1/models/race/rollout', body)));
  t.same(answers.map((a) => a.status).sort(), [201, 409, 409, 409, 409], 'one 201, four 409');
  t.equal((await admin('DELETE', '/v1/models/race/rollout')).status, 200);
});
