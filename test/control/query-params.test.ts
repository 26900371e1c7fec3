// Query parameters of the admin API are taken as declared, like body fields: one that the
// endpoint does not take (a misspelt `?wiat=true`, `?grace=5` for `grace_ms`) or one given
// twice is a 400 naming it, and nothing is done, rather than ignored for the default.

import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, PidLog, reapServers } from '../helpers/control.js';

t.setTimeout(60_000);

// Replica ports 19272-19273 belong to this file.
const RANGE = { from: 19272, to: 19273 };
const pids = new PidLog();
let gw: Gateway | undefined;
t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('an unknown or repeated query parameter is refused, naming it; nothing is done', async (t) => {
  gw = await startGateway({ ports: RANGE }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const refused = async (what: string, reply: Promise<{ status: number; body: any }>, field: string, reason: RegExp): Promise<void> => {
    const r = await reply;
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_INVALID_FIELD', `${what}: SLUICE_ERR_INVALID_FIELD`);
    t.equal(r.body?.error?.field, field, `${what}: names ${field}`);
    t.match(r.body?.error?.message, reason, `${what}: says why`);
  };
  const spec = { model: 'demo', version: '1', runtime: 'sim' };
  await refused('POST ?wiat=true', admin.post('/v1/deployments?wiat=true', spec), 'wiat', /unknown query parameter \(POST \/v1\/deployments takes wait\)/);
  await refused('POST ?wait twice', admin.post('/v1/deployments?wait=true&wait=false', spec), 'wait', /given more than once/);
  t.same(await admin.list(), [], 'nothing was deployed');

  const d = await admin.post('/v1/deployments?wait=true', spec);
  pids.note(d.body);
  t.equal(d.status, 201, '?wait=true is taken');
  await refused('DELETE ?grace=5', admin.del('/v1/deployments/demo-1?grace=5'), 'grace', /takes grace_ms/);
  await refused('POST /undeploy ?grace=5', admin.post('/undeploy/demo-1?grace=5'), 'grace', /takes grace_ms/);
  await refused('logs ?lines=5', admin.get('/v1/deployments/demo-1/logs?lines=5'), 'lines', /takes tail/);
  await refused('GET /v1/deployments ?all', admin.get('/v1/deployments?all'), 'all', /takes no query parameter/);
  t.equal((await admin.get('/healthz?x=1')).status, 200, 'a public endpoint (a probe, a cache buster) ignores a query');
  t.equal((await admin.get('/v1/deployments/demo-1')).body?.state, 'ready', 'demo-1 is still deployed');
  t.equal((await admin.del('/v1/deployments/demo-1?grace_ms=0')).status, 200, '?grace_ms is taken');
});
