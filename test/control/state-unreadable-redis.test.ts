// Instances of two versions share one Redis during a rolling upgrade, and each stores entries
// in its own version's shape: a deployment or an API key this version cannot read (here a
// field it does not know, as a newer version's or a name it refuses, as an older one's) must
// not hide the rest. The other instances' deployments, undeploys and key revocations still
// apply, the entry is said once with what to do, and a restart still starts.

import t from 'tap';
import { redisCommand, startRedis, waitFor } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { InstancesOnRedis, type Instance } from '../helpers/traffic.js';

t.setTimeout(120_000);

// Ports 27100-27114 belong to this file: Redis 27100; gateway A 27101 (admin 27102),
// replicas 27105-27109; gateway B 27103 (admin 27104), replicas 27110-27114.
const A_PORTS = { from: 27105, to: 27109 };
const B_PORTS = { from: 27110, to: 27114 };
const instances = new InstancesOnRedis(t, { from: 27105, to: 27114 });

const config = {
  workers: 1,
  deployments: [{ model: 'sec', version: '1', runtime: 'sim', policies: { auth: { required: true } } }],
};

let A: Instance;
let B: Instance;

t.before(async () => {
  instances.redis = await startRedis(27100);
  [A, B] = await Promise.all([instances.startAt('A', 27101, A_PORTS, config), instances.startAt('B', 27103, B_PORTS, config)]);
});

/** The status of a chat request to `sec` on `i` with `key`. */
async function callWith(i: Instance, key: string): Promise<number> {
  const r = await httpRequest(`${i.gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sec', messages: [{ role: 'user', content: 'hi' }] }), timeoutMs: 10_000,
  });
  return r.status;
}

async function ids(i: Instance): Promise<string[]> {
  return (await i.admin.list()).map((d) => d.id).sort();
}

const createdAt = new Date().toISOString();
// A deployment spec with a field this version does not know, and a key named as one it refuses.
const NEWER_DEPLOYMENT = JSON.stringify({ spec: { model: 'newer', version: '1', runtime: 'sim', a_later_field: true }, created_at: createdAt });
const OLDER_KEY = JSON.stringify({ name: 'constructor', key_sha256: 'a'.repeat(64), deployments: ['*'], limits: {}, deployment_limits: {}, created_at: createdAt });

t.test('an entry B cannot read hides nothing else: deploys, undeploys and key revocations through A reach B', async (t) => {
  const added = await A.admin.post('/v1/keys', { name: 'team', deployments: ['sec'] });
  t.equal(added.status, 201, 'a key added through A');
  const key = added.body.key as string;
  t.equal((await A.admin.post('/v1/deployments?wait=true', { model: 'before', version: '1', runtime: 'sim' })).status, 201, 'before-1 deployed through A');
  await waitFor(async () => (await ids(B)).includes('before-1') && (await callWith(B, key)) === 200, 15_000, 'B to run before-1 and take the key');

  await redisCommand(27100, 'HSET', 'sluice:deployments', 'newer-1', NEWER_DEPLOYMENT);
  await redisCommand(27100, 'HSET', 'sluice:api_keys', 'constructor', OLDER_KEY);

  t.equal((await A.admin.post('/v1/deployments?wait=true', { model: 'after', version: '1', runtime: 'sim' })).status, 201, 'after-1 deployed through A');
  t.equal((await A.admin.del('/v1/keys/team')).status, 200, 'the key revoked through A');
  t.equal((await A.admin.del('/v1/deployments/before-1')).status, 200, 'before-1 undeployed through A');

  await waitFor(async () => (await ids(B)).includes('after-1'), 15_000, 'B to deploy after-1');
  await waitFor(async () => !(await ids(B)).includes('before-1'), 15_000, 'B to undeploy before-1');
  await waitFor(async () => (await callWith(B, key)) === 401, 15_000, 'B to refuse the revoked key');
  t.pass('B followed A past the entries it cannot read');
  t.notOk((await ids(B)).includes('newer-1'), 'the deployment B cannot read is not started there');

  const said = (field: string): string[] => B.gw.lines.filter((l) => l.includes(`field ${field}`) && l.includes('"level":"error"'));
  await waitFor(() => said('newer-1').length > 0 && said('constructor').length > 0, 5_000, 'B to say which entries it cannot read');
  t.match(said('newer-1')[0], /a_later_field.*cannot read it.*HDEL sluice:deployments newer-1/, 'the deployment is named, with what to do');
  t.match(said('constructor')[0], /key sluice:api_keys field constructor: .*authenticates nothing.*HDEL sluice:api_keys constructor/, 'the key is named, with what to do');
  await new Promise((r) => setTimeout(r, 3_000));
  t.equal(said('newer-1').length, 1, 'said once, not at every read');
});

t.test('a deployment whose stored entry turns unreadable goes on running where it runs', async (t) => {
  t.equal((await A.admin.post('/v1/deployments?wait=true', { model: 'kept', version: '1', runtime: 'sim' })).status, 201, 'kept-1 deployed through A');
  await waitFor(async () => (await ids(B)).includes('kept-1'), 15_000, 'B to deploy kept-1');
  await redisCommand(27100, 'HSET', 'sluice:deployments', 'kept-1', JSON.stringify({ spec: { model: 'kept', version: '1', runtime: 'sim', a_later_field: true }, created_at: createdAt }));
  await new Promise((r) => setTimeout(r, 5_000));
  t.ok((await ids(B)).includes('kept-1'), 'B still runs kept-1');
  t.ok((await ids(A)).includes('kept-1'), 'A still runs kept-1');
});

t.test('a restart with entries it cannot read starts, with everything else', async (t) => {
  t.equal(await B.gw.stop(), 0, 'B stops');
  instances.gateways.delete(B.gw);
  B = await instances.startAt('B', 27103, B_PORTS, config);
  t.same(await ids(B), ['after-1', 'sec-1'], 'B is back with what it can read (kept-1, unreadable now, is not started)');
  const added = await A.admin.post('/v1/keys', { name: 'later', deployments: ['sec'] });
  await waitFor(async () => (await callWith(B, added.body.key as string)) === 200, 15_000, 'a key added through A to work on B');
  t.pass('keys added through A work on B');
  await instances.stopAll(t);
});
