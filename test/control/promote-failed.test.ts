// Promote refuses a version that cannot serve: a `failed` one made stable took the alias's
// traffic away from the version that served it (to whatever else was ready) and left
// rollback nothing to return to. A starting or hibernated version can still be promoted.

import t from 'tap';
import { adminClient, reapServers, waitState } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { modelEvents, modelView } from '../helpers/traffic.js';

t.setTimeout(120_000);

// Replica ports 19325-19329 belong to this file.
const RANGE = { from: 19325, to: 19329 };
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim' },
      { model: 'demo', version: '2', runtime: 'sim' },
      // A server that exits at once: failed after its first start.
      { model: 'demo', version: '3', runtime: 'command', command: [process.execPath, '-e', 'process.exit(3)', '{port}'] },
      { model: 'demo', version: '4', runtime: 'sim', scale: { min_replicas: 0, idle_timeout_s: 1 } },
    ],
    traffic: { demo: { '1': 100 } },
  }, {}, false);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('a failed version is refused with 409, and nothing changes', async (t) => {
  const admin = adminClient(gw.adminUrl);
  await waitState(admin, 'demo-3', 'failed');
  await waitState(admin, 'demo-1', 'ready');
  const traffic = async (): Promise<unknown> => {
    const v = await modelView(admin, 'demo');
    return { weights: v.weights, stable: v.stable, events: (await modelEvents(admin, 'demo')).length };
  };
  const before = await traffic();
  const r = await admin.post('/v1/models/demo/promote', { version: '3' });
  t.equal(r.status, 409, r.text);
  t.equal(r.body.error.code, 'SLUICE_ERR_CONFLICT');
  t.match(r.body.error.message, /demo-3 is failed/);
  t.same(await traffic(), before, 'weights, stable version and events unchanged');
  t.equal((await httpRequest(`${gw.url}/demo/_sim/echo`)).headers['x-sluice-version'], '1', 'the alias still goes to 1');
});

t.test('a ready version, and a hibernated one, can be promoted', async (t) => {
  const admin = adminClient(gw.adminUrl);
  const ready = await admin.post('/v1/models/demo/promote', { version: '2' });
  t.equal(ready.status, 200, ready.text);
  t.equal(ready.body.stable, '2');
  await waitState(admin, 'demo-4', 'hibernated');
  const asleep = await admin.post('/v1/models/demo/promote', { version: '4' });
  t.equal(asleep.status, 200, asleep.text);
  t.equal(asleep.body.stable, '4');
});
