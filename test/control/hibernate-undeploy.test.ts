// A deployment undeployed while it is hibernating (its servers still draining): no
// hibernation record may outlive it, or a later deployment of the same id would start
// hibernated, "since" a time before it was made. And a deployment that does start
// hibernated is settled at once for `?wait=true`.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { adminClient, reapServers } from '../helpers/control.js';
import { eventually, replicaPorts, simStats, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 19180-19189 belong to this file.
const RANGE = { from: 19180, to: 19189 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('undeployed while hibernating: redeployed, it starts awake', async (t) => {
  gw = await startGateway({ ports: RANGE });
  const g = gw;
  const admin = adminClient(g.adminUrl);
  const spec = { model: 'hu', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '100', '--tokens', '20'], scale: { min_replicas: 0 }, start_timeout_ms: 5_000 };
  t.equal((await admin.post('/v1/deployments?wait=true', spec)).status, 201);
  const [port] = await replicaPorts(g, 'hu-1');
  // A stream keeps the hibernation draining for ~2 s.
  const stream = httpRequest(`${g.url}/hu-1/api/generate`, { method: 'POST', body: '{"model":"hu","prompt":"hi"}' });
  await eventually(async () => ((await simStats(port!)).active === 1 ? true : undefined), 5_000, 'the stream running');
  const hibernating = admin.post('/v1/deployments/hu-1/hibernate?grace_ms=20000', undefined);
  await eventually(async () => ((await admin.deployment('hu-1'))?.state === 'hibernated' ? true : undefined), 5_000, 'hibernating');
  t.equal((await admin.del('/v1/deployments/hu-1?grace_ms=0')).status, 200, 'undeployed meanwhile');
  await hibernating;
  await stream;

  const started = Date.now();
  const again = await admin.post<{ state: string }>('/v1/deployments?wait=true', spec);
  t.equal(again.status, 201);
  t.equal(again.body.state, 'ready', 'a new deployment of the id starts awake (no hibernation record was left)');
  t.ok(Date.now() - started < 20_000, `answered in ${Date.now() - started} ms`);
});
