// Names that every JavaScript object already has as properties (`__proto__`, `constructor`,
// `toString`, ...) are refused for models, versions and API keys, with a 400 that says so:
// weights by version and events by model are plain objects, where such a name read or set a
// built-in property (a `__proto__` version's weight vanished from the view and the state).
// So are models named after the gateway port's probes (`readyz`, `healthz`), whose alias
// would answer them; and such names as unknown fields are unknown fields.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, PidLog, reapServers, waitState } from '../helpers/control.js';

t.setTimeout(60_000);

// Replica ports 19268-19269 belong to this file.
const RANGE = { from: 19268, to: 19269 };
const pids = new PidLog();
let gw: Gateway | undefined;
t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('reserved names are refused, naming the field', async (t) => {
  gw = await startGateway({ ports: RANGE }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const refused = async (what: string, reply: Promise<{ status: number; body: any }>, field: string): Promise<void> => {
    const r = await reply;
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_INVALID_FIELD', `${what}: SLUICE_ERR_INVALID_FIELD`);
    t.equal(r.body?.error?.field, field, `${what}: names ${field}`);
    t.match(r.body?.error?.message, /is reserved/, `${what}: says the name is reserved`);
  };
  await refused('version __proto__', admin.post('/v1/deployments', { model: 'demo', version: '__proto__', runtime: 'sim' }), 'version');
  await refused('model constructor', admin.post('/v1/deployments', { model: 'constructor', version: '1', runtime: 'sim' }), 'model');
  await refused('registry model toString', admin.post('/deploy/toString/1'), 'model_name');
  await refused('key __proto__', admin.post('/v1/keys', { name: '__proto__' }), 'name');
  // The gateway port's probes: the alias was matched first, and answered /readyz for the gateway.
  await refused('model readyz', admin.post('/v1/deployments', { model: 'readyz', version: '1', runtime: 'sim' }), 'model');
  await refused('model healthz', admin.post('/v1/deployments', { model: 'healthz', version: '1', runtime: 'sim' }), 'model');
  // Unknown fields named like Object.prototype's properties are unknown fields (`in` took them for known ones).
  const unknown = async (what: string, reply: Promise<{ status: number; body: any }>, field: string): Promise<void> => {
    const r = await reply;
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.body?.error?.field, field, `${what}: names ${field}`);
    t.match(r.body?.error?.message, /unknown option/, `${what}: an unknown option`);
  };
  await unknown('key field toString', admin.post('/v1/keys', { name: 'pp1', toString: 1 }), 'toString');
  await unknown('key field __proto__', admin.request('POST', '/v1/keys', '{"name":"pp2","__proto__":{"deployments":["zz"]}}', { 'content-type': 'application/json' }), '__proto__');
  await unknown('deployment policies.hasOwnProperty', admin.post('/v1/deployments', { model: 'demo', version: '1', runtime: 'sim', policies: { hasOwnProperty: 1 } }), 'policies.hasOwnProperty');
  t.same(await admin.list(), [], 'nothing was deployed');
  t.same((await admin.get('/v1/keys')).body.keys, [], 'no key was added');

  const d = await admin.post('/v1/deployments?wait=true', { model: 'demo', version: '1', runtime: 'sim' });
  pids.note(d.body);
  t.equal(d.status, 201);
  const weights = await admin.request('PUT', '/v1/models/demo/traffic', '{"weights": {"__proto__": 100, "1": 1}}');
  t.equal(weights.status, 400, 'a __proto__ weight is refused, not dropped');
  t.equal(weights.body?.error?.field, 'weights.__proto__');
});

t.test('a readyz model stored before such names were refused does not take the gateway\'s /readyz', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  const first = await startGateway({ ports: RANGE, state_dir: stateDir }, {}, false);
  const made = await adminClient(first.adminUrl).post('/v1/deployments?wait=true', { model: 'zz', version: '1', runtime: 'sim' });
  pids.note(made.body);
  await first.stop();
  // As an older sluice stored it.
  const desired = join(stateDir, 'desired.json');
  writeFileSync(desired, readFileSync(desired, 'utf8').replace('"model": "zz"', '"model": "readyz"'));
  const second = await startGateway({ ports: RANGE, state_dir: stateDir }, {}, false);
  t.teardown(() => second.stop());
  await waitState(adminClient(second.adminUrl), 'readyz-1', 'failed');
  t.pass('listed failed: its name is refused where it starts');
  const probe = await httpRequest(`${second.url}/readyz`);
  t.match(JSON.parse(probe.body), { status: String, route_table_version: Number }, `the gateway's own probe answered (${probe.body})`);
});
