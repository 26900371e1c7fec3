// A model whose every version is undeployed leaves no traffic record behind: each model name
// ever weighted used to stay stored for good (traffic.json, the Redis hash sluice:traffic),
// invisible (GET /v1/models/{model} 404) and read by every instance. On Redis no instance
// stores it again; a record an older sluice left is dropped at the next start.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { redisCommand, startRedis, waitFor } from '../helpers/control.js';
import { sleep, startGateway } from '../helpers/procs.js';
import { InstancesOnRedis, type Instance } from '../helpers/traffic.js';

t.setTimeout(120_000);

// Ports 27120-27139 belong to this file: Redis 27120; gateway A 27121 (admin 27122), replicas
// 27125-27129; gateway B 27123 (admin 27124), replicas 27130-27134; the file-store gateway
// 27135 (admin 27136), replicas 27137-27139.
const instances = new InstancesOnRedis(t, { from: 27125, to: 27134 });
const config = { workers: 1, deployments: [{ model: 'cfg', version: '1', runtime: 'sim' }] };

let A: Instance;
let B: Instance;

const stored = (model: string): Promise<unknown> => redisCommand(27120, 'HGET', 'sluice:traffic', model);

async function deployWeighted(i: Instance, model: string): Promise<void> {
  for (const version of ['1', '2']) {
    const r = await i.admin.post('/v1/deployments?wait=true', { model, version, runtime: 'sim' });
    if (r.status !== 201) throw new Error(`${i.name}: deploy ${model}-${version}: ${r.status} ${r.text}`);
    instances.pids.note(r.body);
  }
  const put = await i.admin.request('PUT', `/v1/models/${model}/traffic`, { weights: { '1': 50, '2': 50 } });
  if (put.status !== 200) throw new Error(`${i.name}: weights of ${model}: ${put.status} ${put.text}`);
}

t.before(async () => {
  instances.redis = await startRedis(27120);
  [A, B] = await Promise.all([
    instances.startAt('A', 27121, { from: 27125, to: 27129 }, config),
    instances.startAt('B', 27123, { from: 27130, to: 27134 }, config),
  ]);
});

t.test('on Redis: a model undeployed through A loses its record, and B does not store it again', async (t) => {
  await deployWeighted(A, 'gone');
  await waitFor(async () => (await B.admin.get('/v1/models/gone')).body?.weights?.['2'] === 50, 15_000, 'B to follow the weights');
  t.ok(await stored('gone'), 'the weights are stored');
  t.equal((await A.admin.del('/v1/deployments/gone-1')).status, 200, 'gone-1 undeployed');
  t.ok(await stored('gone'), 'a version left: the record stays');
  t.equal((await A.admin.del('/v1/deployments/gone-2')).status, 200, 'gone-2 undeployed');
  await waitFor(async () => (await B.admin.get('/v1/models/gone')).status === 404, 15_000, 'B to undeploy the model');
  t.equal(await stored('gone'), null, 'no version left: the record is gone');
  await sleep(3_000);
  t.equal(await stored('gone'), null, 'and neither instance stores it again');

  await deployWeighted(B, 'gone');
  await waitFor(async () => (await A.admin.get('/v1/models/gone')).body?.weights?.['2'] === 50, 15_000, 'A to follow the new weights');
  t.ok(await stored('gone'), 'deployed and weighted again (through B): stored anew');
  await instances.stopAll(t);
});

t.test('a record of a model with no version left, in a state file, is dropped at start', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  mkdirSync(stateDir);
  const orphan = {
    model: 'orphan', weights: {}, sticky: null, stable: null, config_digest: '', rollout: null, updated_at: '2026-12-01T00:00:00.000Z',
    events: [{ at: '2026-12-01T00:00:00.000Z', who: 'gateway', action: 'version_removed', from: { 1: 100 }, to: {}, why: 'orphan-1 undeployed' }],
  };
  writeFileSync(join(stateDir, 'traffic.json'), JSON.stringify({ format: 1, traffic: [orphan] }));
  const gw = await startGateway({ ...config, listen: { host: '127.0.0.1', port: 27135 }, admin: { host: '127.0.0.1', port: 27136 }, ports: { from: 27137, to: 27139 }, state_dir: stateDir });
  t.teardown(() => gw.stop());
  const models = (): string[] => (JSON.parse(readFileSync(join(stateDir, 'traffic.json'), 'utf8')) as { traffic: Array<{ model: string }> }).traffic.map((r) => r.model);
  await waitFor(() => models().length === 0, 10_000, 'the orphan record to be dropped');
  t.same(models(), [], 'traffic.json holds no record of a model that has no version');
  t.equal(await gw.stop(), 0, 'exits 0');
});
