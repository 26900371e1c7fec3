// A wake that cannot start a server (no free port left in `ports`): the requests held for
// it are answered at once, the deployment sleeps again with nothing half-made, and a
// later request wakes it once a port is free. It used to stay `starting` for good with a
// replica on port 0, holding its requests for hold.max_wait_ms.

import t from 'tap';
import { adminClient, gwRequest, reapServers, waitState } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 19500-19509 belong to this file: gateway, admin, then two for the replicas.
const RANGE = { from: 19502, to: 19503 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

const SIM = ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'];

t.test('no free port for a wake: 503 at once, asleep again, woken later', async (t) => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19500 },
    admin: { host: '127.0.0.1', port: 19501 },
    ports: RANGE,
    deployments: [
      { model: 'awake', version: '1', runtime: 'sim', args: SIM },
      { model: 'sleeper', version: '1', runtime: 'sim', args: SIM, scale: { min_replicas: 0, idle_timeout_s: 600 }, policies: { hold: { max_wait_ms: 20_000 } } },
    ],
  });
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments/sleeper-1/hibernate')).status, 200);
  await waitState(admin, 'sleeper-1', 'hibernated');
  t.equal((await admin.post('/v1/deployments?wait=true', { model: 'other', version: '1', runtime: 'sim', args: SIM })).status, 201, 'the freed port taken');

  const refused = await gwRequest(`${gw.url}/sleeper-1/api/generate`, { body: { model: 'sleeper', prompt: 'hi', stream: false } });
  t.equal(refused.status, 503);
  t.equal(refused.json?.error?.code, 'SLUICE_ERR_NO_READY_REPLICA', `no ready replica: ${refused.text}`);
  t.match(refused.text, /no free port/, 'the answer says why');
  const view = await waitState(admin, 'sleeper-1', 'hibernated');
  t.same(view.replicas, [], 'nothing half-made');
  t.match(view.last_error, /no free port left in 19502-19503/);
  const events = (await admin.get<{ events: Array<{ action: string }> }>('/v1/deployments/sleeper-1/events')).body.events;
  t.same(events.map((e) => e.action), ['hibernate', 'wake', 'wake_failed']);
  // The admin's wake used to answer 200 with the deployment asleep again.
  const woken = await admin.post<{ error: { code: string; message: string } }>('/v1/deployments/sleeper-1/wake');
  t.equal(woken.status, 502, 'a wake that could not start it is an error');
  t.equal(woken.body.error.code, 'SLUICE_ERR_DEPLOY_FAILED');
  t.match(woken.body.error.message, /could not be woken: .*no free port left in 19502-19503.*it is hibernated/);
  t.equal((await admin.deployment('sleeper-1'))?.state, 'hibernated', 'and it sleeps, as the message says');

  t.equal((await admin.del('/v1/deployments/other-1')).status, 200, 'a port free again');
  const served = await gwRequest(`${gw.url}/sleeper-1/api/generate`, { body: { model: 'sleeper', prompt: 'hi', stream: false } });
  t.equal(served.status, 200, 'the next request wakes it');
  t.equal((await admin.deployment('sleeper-1'))?.state, 'ready');
});
