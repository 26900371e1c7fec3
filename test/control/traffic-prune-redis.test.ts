// Two instances on one Redis (with a password): a version deployed through one and weighted
// at once keeps its weight while the other has not started it yet, and a version
// undeployed through either instance leaves the weights once, with one event, on both.

import t, { type Test } from 'tap';
import { startRedis, waitFor } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { InstancesOnRedis, modelEvents, modelView, type Instance, type ModelView, type TrafficEvent } from '../helpers/traffic.js';
import { sleep } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 19200-19210 belong to this file: Redis 19200; gateway A 19201 (admin 19202),
// replicas 19205-19207; gateway B 19203 (admin 19204), replicas 19208-19210.
const RANGE = { from: 19205, to: 19210 };
const instances = new InstancesOnRedis(t, RANGE);
const pids = instances.pids;

async function start(name: string, port: number, replicas: { from: number; to: number }): Promise<Instance> {
  return instances.startAt(name, port, replicas, {
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  });
}

const view = (i: Instance): Promise<ModelView> => modelView(i.admin, 'demo', i.name);
const removals = async (i: Instance): Promise<TrafficEvent[]> => (await modelEvents(i.admin, 'demo', i.name)).filter((e) => e.action === 'version_removed');

/** The alias's versions over `n` requests on instance `i`. */
async function aliasVersions(i: Instance, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let k = 0; k < n; k++) {
    const r = await httpRequest(`${i.gw.url}/demo/_sim/echo`, { timeoutMs: 10_000 });
    seen.add(r.status === 200 ? String(r.headers['x-sluice-version']) : `status ${r.status}`);
  }
  return seen;
}

/** Deploys `version` through `i`, waiting until it is ready there, and notes its pids. */
async function deploy(i: Instance, version: string): Promise<void> {
  const r = await i.admin.post(`/v1/deployments?wait=true`, { model: 'demo', version, runtime: 'sim' });
  if (r.status !== 201) throw new Error(`${i.name}: deploy demo-${version}: ${r.status} ${r.text}`);
  pids.note(r.body);
}

let A: Instance;
let B: Instance;

t.before(async () => {
  instances.redis = await startRedis(19200, { password: 'sluice-test-pw' });
  [A, B] = await Promise.all([start('A', 19201, { from: 19205, to: 19207 }), start('B', 19203, { from: 19208, to: 19210 })]);
});

t.test('a version deployed on A and weighted at once keeps its weight on both instances', async (t) => {
  await deploy(A, '3');
  const put = await A.admin.request<ModelView>('PUT', '/v1/models/demo/traffic', { weights: { '1': 50, '3': 50 } });
  t.equal(put.status, 200, put.text.slice(0, 300));
  // B reads the weights within 400 ms and deploys demo-3 within 2 s: the weights must
  // outlive the moment B has them and not the version.
  await sleep(5_000);
  const [va, vb] = await Promise.all([view(A), view(B)]);
  t.same(va.weights, { '1': 50, '3': 50 }, 'A keeps 50/50 five seconds later');
  t.same(vb.weights, { '1': 50, '3': 50 }, 'B shows 50/50 too');
  t.same(vb.versions.map((v) => [v.version, v.weight]), [['1', 50], ['3', 50]], 'B runs demo-3 by now');
  t.same([...(await removals(A)), ...(await removals(B))], [], 'no version_removed event on either instance');
  for (const i of [A, B]) {
    pids.note(await i.admin.list());
    const seen = await waitFor(async () => {
      const s = await aliasVersions(i, 40);
      return s.has('1') && s.has('3') && s.size === 2 ? s : undefined;
    }, 10_000, `${i.name}'s alias to split over 1 and 3`);
    t.same([...seen].sort(), ['1', '3'], `${i.name}'s alias splits over both versions`);
  }
});

t.test('a version deployed and weighted through B, undeployed through A, leaves the weights once on both', async (t) => {
  await deploy(B, '4');
  const put = await B.admin.request<ModelView>('PUT', '/v1/models/demo/traffic', { weights: { '1': 40, '3': 30, '4': 30 } });
  t.equal(put.status, 200, put.text.slice(0, 300));
  // A follows the weights every 400 ms and the deployments every 2 s, in either order: it
  // may run demo-4 a moment before it reads the weights, never with a weight pruned for good.
  const onA = await waitFor(async () => {
    const v = await view(A);
    return v.versions.some((x) => x.version === '4' && x.ready_replicas > 0) && v.weights?.['4'] !== undefined ? v : undefined;
  }, 10_000, 'A to run demo-4 and have its weight');
  t.same(onA.weights, { '1': 40, '3': 30, '4': 30 }, 'A has B\'s weights, demo-4 included, once it runs it');
  pids.note(await A.admin.list());

  const del = await A.admin.del('/v1/deployments/demo-4?grace_ms=0');
  t.equal(del.status, 200, del.text.slice(0, 300));
  for (const i of [A, B]) {
    const v = await waitFor(async () => {
      const x = await view(i);
      return x.versions.every((y) => y.version !== '4') && JSON.stringify(x.weights) === JSON.stringify({ '1': 40, '3': 30 }) ? x : undefined;
    }, 10_000, `${i.name} to drop demo-4 and its weight`);
    t.same(v.weights, { '1': 40, '3': 30 }, `${i.name}: demo-4's weight is gone, the others stay`);
  }
  await sleep(1_000);
  for (const i of [A, B]) {
    const events = await removals(i);
    t.same(events.map((e) => [e.who, e.from, e.to, e.why]), [['gateway', { '1': 40, '3': 30, '4': 30 }, { '1': 40, '3': 30 }, 'demo-4 undeployed: removed from the traffic']], `${i.name}: one version_removed event`);
  }
});

t.test('stopping the gateways stops every model server they started', async (t: Test) => {
  await instances.stopAll(t);
});
