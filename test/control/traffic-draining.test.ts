// A version being undeployed (draining its requests in flight) takes no new request, and
// its weight is dropped when the undeploy begins. Promoted or weighted meanwhile, it was
// accepted (200) and stayed in the weights, and as the stable version, once gone: the alias
// fell back to "any ready" for good and rollback returned to a version that no longer
// existed. All are refused now (409), a rollout of it too, and nothing changes.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27925-27929 belong to this file (the model servers of the deployments made through the admin API).
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({ ports: { from: 27925, to: 27929 }, log: { level: 'info', access: false }, deployments: [] });
});
t.teardown(() => gw?.stop());

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await httpRequest(`${gw.adminUrl}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' }, timeoutMs: 30_000 });
  return { status: r.status, json: JSON.parse(r.body) };
}

t.test('a draining version can be neither weighted, promoted nor rolled out', async (t) => {
  for (const version of ['1', '2']) {
    const r = await admin('POST', '/v1/deployments?wait=true', { model: 'dr', version, runtime: 'sim', args: ['--ttft-ms', '2500', '--tokens', '1'] });
    t.equal(r.status, 201, r.json.error?.message ?? `dr-${version} deployed`);
  }
  t.equal((await admin('POST', '/v1/models/dr/promote', { version: '1' })).status, 200);
  // A request in flight on dr-2 keeps it draining for a while once its undeploy begins.
  const inFlight = httpRequest(`${gw.url}/dr-2/api/generate`, { method: 'POST', body: '{"model":"dr","prompt":"x","stream":false}', timeoutMs: 30_000 });
  await eventually(async () => ((await admin('GET', '/v1/stats')).json.deployments.find((d: { deployment: string }) => d.deployment === 'dr-2')?.in_flight === 1 ? true : undefined), 5_000, 'the request in flight');
  const undeploy = admin('DELETE', '/v1/deployments/dr-2?grace_ms=20000');
  await eventually(async () => ((await admin('GET', '/v1/models/dr')).json.versions.find((v: { version: string }) => v.version === '2')?.state === 'draining' ? true : undefined), 5_000, 'dr-2 draining');
  const before = (await admin('GET', '/v1/models/dr')).json;

  const put = await admin('PUT', '/v1/models/dr/traffic', { weights: { '1': 50, '2': 50 } });
  t.equal(put.status, 409, 'weights for a draining version');
  t.match(put.json.error, { code: 'SLUICE_ERR_CONFLICT', field: 'weights.2', message: /dr-2 is being undeployed/ });
  const promote = await admin('POST', '/v1/models/dr/promote', { version: '2' });
  t.equal(promote.status, 409, 'promote of a draining version');
  t.match(promote.json.error, { code: 'SLUICE_ERR_CONFLICT', field: 'version', message: /dr-2 is being undeployed/ });
  const rollout = await admin('PUT', '/v1/models/dr/rollout', { canary: '2' });
  t.equal(rollout.status, 409, 'a rollout of a draining canary');
  t.match(rollout.json.error, { code: 'SLUICE_ERR_CONFLICT', field: 'canary', message: /dr-2 is being undeployed/ });
  const now = (await admin('GET', '/v1/models/dr')).json;
  t.same([now.weights, now.stable], [before.weights, before.stable], 'nothing changed');

  t.equal((await inFlight).status, 200, 'the request in flight finished');
  t.equal((await undeploy).status, 200);
  const after = (await admin('GET', '/v1/models/dr')).json;
  t.same(after.weights, { '1': 100 });
  t.equal(after.stable, '1');
  t.equal(after.fallback, null, 'the alias routes by its weights');
});
