// A state file that cannot be written (here: a directory in its place) refuses the change
// that needed it with a JSON 5xx, and the change is gone for good: the next write of that
// file, once it can be written again, stores what was accepted only, and so does the next
// start. No temp file is left behind.

import { mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, PidLog, reapServers, waitState, type AdminClient } from '../helpers/control.js';

t.setTimeout(120_000);

// Replica ports 19260-19265 belong to this file.
const RANGE = { from: 19260, to: 19265 };
const stateDir = join(t.testdir(), 'state');
const pids = new PidLog();
const gateways: Gateway[] = [];

t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await reapServers(pids.pids, RANGE);
});

async function gateway(): Promise<{ g: Gateway; admin: AdminClient }> {
  const g = await startGateway({ ports: RANGE, state_dir: stateDir }, {}, false);
  gateways.push(g);
  return { g, admin: adminClient(g.adminUrl) };
}

const temps = (): string[] => readdirSync(stateDir).filter((f) => f.endsWith('.tmp'));
const readJson = (name: string): any => JSON.parse(readFileSync(join(stateDir, name), 'utf8'));

/** Puts a directory where the state file `name` is, so that writing it fails (EISDIR). */
function block(name: string): void {
  rmSync(join(stateDir, name), { force: true });
  mkdirSync(join(stateDir, name));
}

t.test('a refused state write is not stored by the next one, nor after a restart', async (t) => {
  const { g, admin } = await gateway();
  for (const [model, version] of [['demo', '1'], ['demo', '2'], ['other', '1']] as const) {
    const r = await admin.post('/v1/deployments?wait=true', { model, version, runtime: 'sim' });
    t.equal(r.status, 201, `${model}-${version} deployed`);
    pids.note(r.body);
  }
  t.equal((await admin.request('PUT', '/v1/models/demo/traffic', { weights: { 1: 50, 2: 50 } })).status, 200);

  // traffic.json
  block('traffic.json');
  const refused = await admin.request('PUT', '/v1/models/demo/traffic', { weights: { 1: 30, 2: 70 } });
  t.equal(refused.status, 500, 'the traffic change is refused');
  t.equal(refused.body?.error?.code, 'SLUICE_ERR_INTERNAL', 'with a JSON error');
  t.match(refused.body?.error?.message, /traffic\.json: cannot write it \(EISDIR\)/, 'naming the file and the cause');
  t.same((await admin.get('/v1/models/demo')).body.weights, { 1: 50, 2: 50 }, 'the live weights are unchanged');
  t.same(temps(), [], 'no temp file is left behind');
  rmdirSync(join(stateDir, 'traffic.json'));
  t.equal((await admin.request('PUT', '/v1/models/other/traffic', { weights: { 1: 1 } })).status, 200, 'another model\'s change is stored');
  const demo = readJson('traffic.json').traffic.find((x: { model: string }) => x.model === 'demo');
  t.same(demo.weights, { 1: 50, 2: 50 }, 'traffic.json holds demo\'s accepted weights, not the refused ones');
  t.notOk(demo.events.some((e: { to: unknown }) => JSON.stringify(e.to) === JSON.stringify({ 1: 30, 2: 70 })), 'nor an event of the refused change');

  // api-keys.json
  t.equal((await admin.post('/v1/keys', { name: 'first', deployments: ['demo'] })).status, 201);
  block('api-keys.json');
  const secret = 'sk-refused-key-0123456789';
  const refusedKey = await admin.post('/v1/keys', { name: 'refused', key: secret });
  t.equal(refusedKey.status, 500, 'the key creation is refused');
  t.match(refusedKey.body?.error?.message, /api-keys\.json: cannot write it/);
  t.notOk(refusedKey.text.includes(secret), 'the error does not show the key');
  t.equal((await admin.get('/v1/keys/refused')).status, 404, 'the refused key is not in force');
  t.same(temps(), [], 'no temp file is left behind');
  rmdirSync(join(stateDir, 'api-keys.json'));
  t.equal((await admin.post('/v1/keys', { name: 'second' })).status, 201, 'another key is stored');
  t.same(readJson('api-keys.json').api_keys.map((k: { name: string }) => k.name), ['first', 'second'], 'api-keys.json holds the accepted key, not the refused one');

  // desired.json
  block('desired.json');
  const refusedDelete = await admin.del('/v1/deployments/other-1?grace_ms=0');
  t.equal(refusedDelete.status, 500, 'the undeploy is refused');
  t.match(refusedDelete.body?.error?.message, /desired\.json: cannot write it/);
  t.equal((await admin.get('/v1/deployments/other-1')).status, 200, 'and other-1 stays deployed');
  t.same(temps(), [], 'no temp file is left behind');
  rmdirSync(join(stateDir, 'desired.json'));
  const third = await admin.post('/v1/deployments?wait=true', { model: 'third', version: '1', runtime: 'sim' });
  t.equal(third.status, 201, 'another deployment is stored');
  pids.note(third.body);
  const stored = (): string[] => readJson('desired.json').deployments.map((d: { spec: { model: string; version: string } }) => `${d.spec.model}-${d.spec.version}`).sort();
  t.same(stored(), ['demo-1', 'demo-2', 'other-1', 'third-1'], 'desired.json still holds other-1');

  t.equal(await g.stop(), 0);
  gateways.splice(gateways.indexOf(g), 1);
  const { admin: again } = await gateway();
  for (const id of ['demo-1', 'demo-2', 'other-1', 'third-1']) pids.note(await waitState(again, id, 'ready'));
  t.same((await again.get('/v1/models/demo')).body.weights, { 1: 50, 2: 50 }, 'after a restart demo routes by the accepted weights');
  t.same((await again.get('/v1/keys')).body.keys.map((k: { name: string }) => k.name), ['first', 'second'], 'the refused key did not come back');
});
