// Builds of 2026-12-07 between 7af2017 and 1c00211 kept the shared state's generation
// (sluice:state:initialised) as a plain string; later ones keep it in a hash. A Redis such
// a build initialised (an upgrade in place, or a rolling one beside it) used to stop every
// later start with WRONGTYPE; its state is now read, and a loss of it still noticed.

import t from 'tap';
import { redisCommand, startRedis, waitFor } from '../helpers/control.js';
import { InstancesOnRedis, type Instance } from '../helpers/traffic.js';

t.setTimeout(120_000);

// Ports 27150-27155 belong to this file: Redis 27150; the gateway 27151 (admin 27152),
// replicas 27153-27155.
const instances = new InstancesOnRedis(t, { from: 27153, to: 27155 });
const GENERATION = '3b1c1a9e-5d2f-4c0e-9f51-7a6c2b8d9e01';
const STORED = JSON.stringify({ spec: { model: 'kept', version: '1', runtime: 'sim' }, created_at: '2026-12-07T05:50:00.000Z' });
let A: Instance;

t.before(async () => {
  instances.redis = await startRedis(27150);
  // As that build left the store: the generation a string, one deployment stored.
  await redisCommand(27150, 'SET', 'sluice:state:initialised', GENERATION);
  await redisCommand(27150, 'HSET', 'sluice:deployments', 'kept-1', STORED);
  A = await instances.startAt('A', 27151, { from: 27153, to: 27155 }, { workers: 1, deployments: [] });
});

t.test('a store whose generation is a string is read: its deployments run, new ones are stored', async (t) => {
  t.same((await A.admin.list()).map((d) => d.id), ['kept-1'], 'the stored deployment runs');
  const r = await A.admin.post('/v1/deployments?wait=true', { model: 'added', version: '1', runtime: 'sim' });
  t.equal(r.status, 201, `a deploy is stored: ${r.text.slice(0, 200)}`);
  instances.pids.note(r.body);
  t.ok(await redisCommand(27150, 'HGET', 'sluice:deployments', 'added-1'), 'in Redis');
  t.equal(await redisCommand(27150, 'GET', 'sluice:state:initialised'), GENERATION, 'the generation is left as that build wrote it');
  t.notOk(A.gw.lines.some((l) => l.includes('lost its data')), 'no loss is seen');
});

t.test('the loss of such a store is still noticed, and the state stored again', async (t) => {
  await redisCommand(27150, 'FLUSHALL');
  await waitFor(() => A.gw.lines.some((l) => l.includes('the shared state store lost its data')), 10_000, 'the loss to be logged');
  await waitFor(async () => (await redisCommand(27150, 'HGET', 'sluice:deployments', 'kept-1')) !== null, 10_000, 'kept-1 to be stored again');
  t.ok(await redisCommand(27150, 'HGET', 'sluice:deployments', 'added-1'), 'and added-1');
  t.same((await A.admin.list()).map((d) => d.id).sort(), ['added-1', 'kept-1'], 'both still run');
  await instances.stopAll(t);
});
