// A hibernated deployment with fallbacks: its requests go to a fallback at once, and
// the first of them wakes it. Served by the fallback without a wake, it slept for good.
// A hibernated fallback: skipped, it is woken too, or it would never serve.

import t from 'tap';
import { adminClient, gwRequest, reapServers, waitState } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 19480-19489 belong to this file: gateway, admin, then the replicas'.
const RANGE = { from: 19482, to: 19489 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('a request served by a fallback wakes the hibernated deployment', async (t) => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19480 },
    admin: { host: '127.0.0.1', port: 19481 },
    ports: RANGE,
    deployments: [
      { model: 'big', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'] },
      { model: 'small', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'], fallbacks: ['big-1'], scale: { min_replicas: 0, idle_timeout_s: 600 } },
    ],
  });
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments/small-1/hibernate')).status, 200);
  await waitState(admin, 'small-1', 'hibernated');

  const first = await gwRequest(`${gw.url}/small-1/api/generate`, { body: { model: 'small', prompt: 'hi', stream: false } });
  t.equal(first.status, 200, 'answered at once');
  t.equal(first.headers['x-sluice-served-by'], 'big-1', 'by the fallback, while it sleeps');

  await waitState(admin, 'small-1', 'ready', 15_000);
  const events = (await admin.get<{ events: Array<{ action: string }> }>('/v1/deployments/small-1/events')).body.events;
  t.same(events.map((e) => e.action), ['hibernate', 'wake'], 'woken by that request');
  const second = await gwRequest(`${gw.url}/small-1/api/generate`, { body: { model: 'small', prompt: 'hi', stream: false } });
  t.equal(second.status, 200);
  t.equal(second.headers['x-sluice-served-by'], undefined, 'awake, it answers itself');
});

t.test('a request that would go to a hibernated fallback wakes it', async (t) => {
  const g = gw!;
  const admin = adminClient(g.adminUrl);
  const sim = ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'];
  const spare = { model: 'spare', version: '1', runtime: 'sim', args: sim, scale: { min_replicas: 0, idle_timeout_s: 600 } };
  t.equal((await admin.post('/v1/deployments?wait=true', spare)).status, 201);
  t.equal((await admin.post('/v1/deployments/spare-1/hibernate')).status, 200);
  await waitState(admin, 'spare-1', 'hibernated');
  const busy = { model: 'busy', version: '1', runtime: 'sim', args: [...sim, '--status', '503'], fallbacks: ['spare-1'] };
  t.equal((await admin.post('/v1/deployments?wait=true', busy)).status, 201);

  const first = await gwRequest(`${g.url}/busy-1/api/generate`, { body: { model: 'busy', prompt: 'hi', stream: false } });
  t.equal(first.status, 503, 'the fallback asleep: the deployment\'s own answer');
  await waitState(admin, 'spare-1', 'ready', 15_000);
  const events = (await admin.get<{ events: Array<{ action: string }> }>('/v1/deployments/spare-1/events')).body.events;
  t.same(events.map((e) => e.action), ['hibernate', 'wake'], 'woken by that request');
  const second = await gwRequest(`${g.url}/busy-1/api/generate`, { body: { model: 'busy', prompt: 'hi', stream: false } });
  t.equal(second.status, 200, 'awake, the fallback serves');
  t.equal(second.headers['x-sluice-served-by'], 'spare-1');
});
