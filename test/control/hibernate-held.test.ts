// A request held while its deployment starts, when the deployment is hibernated before
// it is ready: the request wakes it again, as one that arrives during the hibernation
// does. It used to wait out hold.max_wait_ms beside a deployment that slept on.

import t from 'tap';
import { adminClient, gwRequest, reapServers, waitFor } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 19490-19499 belong to this file: gateway, admin, then the replicas'.
const RANGE = { from: 19492, to: 19499 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('hibernated while a request waits for its start: the request wakes it', async (t) => {
  gw = await startGateway({ listen: { host: '127.0.0.1', port: 19490 }, admin: { host: '127.0.0.1', port: 19491 }, ports: RANGE });
  const admin = adminClient(gw.adminUrl);
  const spec = {
    model: 'late', version: '1', runtime: 'sim', args: ['--start-delay-ms', '2000', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'],
    scale: { min_replicas: 0, idle_timeout_s: 600 }, policies: { hold: { max_wait_ms: 20_000 } },
  };
  t.equal((await admin.post('/v1/deployments', spec)).status, 201);
  const reply = gwRequest(`${gw.url}/late-1/api/generate`, { body: { model: 'late', prompt: 'hi', stream: false } });
  await waitFor(async () => (await admin.get<{ deployments: Array<{ deployment: string; queued: number }> }>('/v1/stats')).body.deployments
    .find((d) => d.deployment === 'late-1')?.queued === 1, 10_000, 'the request held');
  t.equal((await admin.post('/v1/deployments/late-1/hibernate')).status, 200, 'hibernated before it was ready');

  const r = await reply;
  t.equal(r.status, 200, `served, not left waiting: ${r.text}`);
  const events = (await admin.get<{ events: Array<{ action: string }> }>('/v1/deployments/late-1/events')).body.events;
  t.same(events.map((e) => e.action), ['hibernate', 'wake'], 'the held request woke it');
});
