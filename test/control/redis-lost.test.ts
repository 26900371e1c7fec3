// Two instances on one Redis without persistence, which is stopped and started again empty
// (a restart without saving; a rescheduled pod whose AOF was on an emptyDir): the empty store
// is a lost one, not "everything was undeployed". Both instances keep the API deployment,
// the API key and the traffic weights, and store them again for each other; an undeploy
// made afterwards through one is still followed by the other.

import t, { type Test } from 'tap';
import { redisCommand, startRedis, waitFor } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { InstancesOnRedis, modelView, type Instance } from '../helpers/traffic.js';
import { sleep } from '../helpers/procs.js';

t.setTimeout(150_000);

// Ports 19800-19814 belong to this file: Redis 19800; gateway A 19801 (admin 19802),
// replicas 19805-19809; gateway B 19803 (admin 19804), replicas 19810-19814.
const REDIS_PORT = 19800;
const RANGE = { from: 19805, to: 19814 };
const WEIGHTS = { '1': 30, '2': 70 };
const instances = new InstancesOnRedis(t, RANGE);
const pids = instances.pids;

function start(name: string, port: number, replicas: { from: number; to: number }): Promise<Instance> {
  return instances.startAt(name, port, replicas, {
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', policies: { auth: { required: true } } }],
  });
}

const echo = (i: Instance, deployment: string, key: string): Promise<{ status: number }> =>
  httpRequest(`${i.gw.url}/${deployment}/_sim/echo`, { headers: { authorization: `Bearer ${key}` }, timeoutMs: 10_000 });
const hashKeys = async (hash: string): Promise<string[]> => ((await redisCommand(REDIS_PORT, 'HKEYS', hash)) as string[]).sort();
const logged = (i: Instance, text: string): string[] => i.gw.lines.filter((l) => l.includes(text));

let A: Instance;
let B: Instance;
let key: string;
/** demo-2 as A made it: its created_at and its servers' pids on each instance. */
let createdAt: string;
const serversOf = new Map<string, number[]>();

async function demo2(i: Instance): Promise<{ created_at: string; state: string; pids: number[] } | null> {
  const d = await i.admin.deployment('demo-2');
  return d === null ? null : { created_at: (d as unknown as { created_at: string }).created_at, state: d.state, pids: (d.replicas ?? []).map((r) => r.pid as number) };
}

t.before(async () => {
  // A first start on an empty Redis: nothing stored, nothing lost.
  instances.redis = await startRedis(REDIS_PORT);
  [A, B] = await Promise.all([start('A', 19801, { from: 19805, to: 19809 }), start('B', 19803, { from: 19810, to: 19814 })]);
});

t.test('an API deployment, key and weights made through A reach B', async (t) => {
  const dep = await A.admin.post('/v1/deployments?wait=true', { model: 'demo', version: '2', runtime: 'sim', policies: { auth: { required: true } } });
  t.equal(dep.status, 201, dep.text.slice(0, 300));
  const created = await A.admin.post('/v1/keys', { name: 'team', deployments: ['demo'] });
  t.equal(created.status, 201, created.text.slice(0, 300));
  key = created.body.key;
  const put = await A.admin.request('PUT', '/v1/models/demo/traffic', { weights: WEIGHTS });
  t.equal(put.status, 200, put.text.slice(0, 300));
  for (const i of [A, B]) {
    await waitFor(async () => (await echo(i, 'demo-2', key)).status === 200, 15_000, `${i.name} to serve demo-2 to the key`);
    const d = (await demo2(i))!;
    await waitFor(async () => JSON.stringify((await modelView(i.admin, 'demo', i.name)).weights) === JSON.stringify(WEIGHTS), 10_000, `${i.name} to have the weights`);
    serversOf.set(i.name, d.pids);
    pids.note(await i.admin.list());
  }
  createdAt = (await demo2(A))!.created_at;
  t.equal((await demo2(B))!.created_at, createdAt, 'B runs A\'s demo-2');
  t.same(await hashKeys('sluice:deployments'), ['demo-2'], 'Redis holds demo-2');
  t.same(await hashKeys('sluice:api_keys'), ['team'], 'and the key');
});

t.test('Redis restarted without its data: nothing is undeployed or dropped, and the store has it all again', async (t) => {
  await instances.redis!.stop();
  // No persistence: it comes back empty, and an instance may store its state again before
  // this test can look.
  instances.redis = await startRedis(REDIS_PORT);

  await waitFor(async () => (await hashKeys('sluice:deployments')).length > 0 && (await hashKeys('sluice:api_keys')).length > 0 && (await hashKeys('sluice:traffic')).length > 0,
    20_000, 'the instances to store their state again');
  t.same(await hashKeys('sluice:deployments'), ['demo-2'], 'demo-2 is stored again');
  t.same(await hashKeys('sluice:api_keys'), ['team'], 'the key is stored again');
  const storedKey = JSON.parse((await redisCommand(REDIS_PORT, 'HGET', 'sluice:api_keys', 'team')) as string);
  t.equal(JSON.stringify(storedKey).includes(key), false, 'as its digest, never the key');
  const storedDeployment = JSON.parse((await redisCommand(REDIS_PORT, 'HGET', 'sluice:deployments', 'demo-2')) as string);
  t.equal(storedDeployment.created_at, createdAt, 'with the created_at it had');
  const storedTraffic = JSON.parse((await redisCommand(REDIS_PORT, 'HGET', 'sluice:traffic', 'demo')) as string);
  t.same(storedTraffic.weights, WEIGHTS, 'the weights are stored again');
  for (const i of [A, B]) {
    await waitFor(() => logged(i, 'the shared state store lost its data').length > 0, 10_000, `${i.name} to log the loss`);
  }

  // Each instance reads the store every 2 s and its traffic every 400 ms: a few of each on
  // the restored store, for an undeploy or a dropped key to show if one were to come.
  await sleep(5_000);
  for (const i of [A, B]) {
    t.same(logged(i, 'undeployed: removed from the shared desired state'), [], `${i.name} undeployed nothing`);
    const d = await demo2(i);
    t.equal(d?.created_at, createdAt, `${i.name} still runs demo-2, as made`);
    t.same(d?.pids, serversOf.get(i.name), `${i.name}: on the same servers`);
    t.equal((await echo(i, 'demo-2', key)).status, 200, `${i.name} serves demo-2 to the key`);
    t.same((await i.admin.get('/v1/keys/team')).status, 200, `${i.name} lists the key`);
    t.same((await modelView(i.admin, 'demo', i.name)).weights, WEIGHTS, `${i.name} keeps the weights`);
  }
});

t.test('an undeploy through B afterwards is still followed by A', async (t) => {
  const del = await B.admin.del('/v1/deployments/demo-2?grace_ms=0');
  t.equal(del.status, 200, del.text.slice(0, 300));
  await waitFor(async () => (await demo2(A)) === null, 15_000, 'A to undeploy demo-2');
  t.same(await hashKeys('sluice:deployments'), [], 'the store no longer has demo-2');
  const removed = await B.admin.del('/v1/keys/team');
  t.equal(removed.status, 200, removed.text.slice(0, 300));
  await waitFor(async () => (await A.admin.get('/v1/keys/team')).status === 404, 15_000, 'A to drop the key');
  t.pass('A followed both');
});

t.test('stopping the gateways stops every model server they started', async (t: Test) => {
  await instances.stopAll(t);
});
