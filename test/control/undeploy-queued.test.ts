// A blue-green switch under load: the model's traffic goes to the new version, then the old
// one is undeployed. The old version's requests waiting for a replica
// (policies.queue.max_inflight_per_replica) were admitted as much as those in flight: the
// undeploy drains them too, and they are served by the version they waited for. They used
// to get 404 SLUICE_ERR_NO_ROUTE "q-1 was removed while the request waited", for a model
// that exists, and the undeploy answered without waiting for them.

import t from 'tap';
import { adminClient, gwRequest, reapServers, waitFor } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 25440-25449 belong to this file: gateway, admin, then the replicas'.
const RANGE = { from: 25442, to: 25449 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('an undeploy serves the requests waiting for the version, then stops it', async (t) => {
  gw = await startGateway({ listen: { host: '127.0.0.1', port: 25440 }, admin: { host: '127.0.0.1', port: 25441 }, ports: RANGE });
  const admin = adminClient(gw.adminUrl);
  for (const version of ['1', '2']) {
    const r = await admin.post('/v1/deployments?wait=true', {
      model: 'q', version, runtime: 'sim', args: ['--ttft-ms', '0', '--tokens', '8', '--token-ms', '50'],
      policies: { queue: { max_inflight_per_replica: 1 } },
    });
    t.equal(r.status, 201, `q-${version} deployed`);
  }
  t.equal((await admin.request('PUT', '/v1/models/q/traffic', { weights: { 1: 100 } })).status, 200, 'the traffic goes to q-1');

  // One request in flight on q-1's replica, five waiting for it.
  const replies = Array.from({ length: 6 }, () => gwRequest(`${gw!.url}/q/api/generate`, { body: { model: 'q', prompt: 'hi', stream: false } }));
  await waitFor(async () => (await admin.get<{ deployments: Array<{ deployment: string; queued: number }> }>('/v1/stats')).body.deployments
    .find((d) => d.deployment === 'q-1')?.queued === 5, 10_000, 'five requests waiting for q-1');

  t.equal((await admin.post('/v1/models/q/promote', { version: '2' })).status, 200, 'the traffic goes to q-2');
  const undeploy = admin.del('/v1/deployments/q-1?grace_ms=30000');
  const answers = await Promise.all(replies);
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200], `every request admitted before the undeploy is served: ${answers.map((a) => a.json?.error?.code ?? a.status).join(', ')}`);
  t.same(answers.map((a) => a.headers['x-sluice-version']), ['1', '1', '1', '1', '1', '1'], 'by the version it waited for');
  t.equal((await undeploy).status, 200, 'the undeploy ends once they are done');
  const after = await gwRequest(`${gw.url}/q/api/generate`, { body: { model: 'q', prompt: 'hi', stream: false } });
  t.equal(after.headers['x-sluice-version'], '2', 'a new request goes to q-2');
});
