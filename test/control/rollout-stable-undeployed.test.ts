// The stable version undeployed while a rollout of its model runs: nothing is left to compare
// the canary with, nor to roll back to. The rollout ends there (aborted, in the event that
// removes the version), instead of judging the canary alone and then "rolling back" to the
// version that is gone, which left the alias to fall back to the newest ready version: the
// failing canary it had just rolled back.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { simConfig } from '../helpers/policy.js';
import { replicaPorts, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27905-27909 belong to this file (the model servers of the deployments made through the admin API).
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27905, to: 27909 },
    log: { level: 'info', access: false },
    policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    deployments: [],
  });
});
t.teardown(() => gw?.stop());

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await httpRequest(`${gw.adminUrl}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: r.status, json: JSON.parse(r.body) };
}

t.test('undeploying the stable version aborts the rollout; its traffic never goes back to the version gone', async (t) => {
  for (const version of ['1', '2']) {
    const r = await admin('POST', '/v1/deployments?wait=true', { model: 'su', version, runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1'] });
    t.equal(r.status, 201, r.json.error?.message ?? `su-${version} deployed`);
  }
  t.equal((await admin('POST', '/v1/models/su/promote', { version: '1' })).status, 200);
  // The canary fails every answer: a check that could still judge it would fail at once.
  const [canaryPort] = await replicaPorts(gw, 'su-2');
  await simConfig(canaryPort!, { error_rate: 1 });
  const started = await admin('PUT', '/v1/models/su/rollout', { canary: '2', steps: [10, 100], interval_s: 0.5, min_requests: 3, failed_checks: 1 });
  t.equal(started.status, 201, started.json.error?.message ?? "the rollout started");

  t.equal((await admin('DELETE', '/v1/deployments/su-1')).status, 200);
  const after = (await admin('GET', '/v1/models/su')).json;
  t.equal(after.rollout.status, 'aborted', 'the rollout ends with its stable version');
  t.not(after.rollout.finished_at, null);
  t.equal(after.stable, null, 'no stable version is left');
  t.same(after.weights, { '2': 10 }, 'the weights of what is left');
  const events = (await admin('GET', '/v1/models/su/events')).json.events as Array<{ who: string; action: string; why: string }>;
  t.match(events.at(-1), { who: 'gateway', action: 'version_removed', why: /su-1 undeployed.*the rollout of su-2 is aborted/ });

  // Traffic the canary fails, for several of the rollout's intervals: nothing more happens to the traffic.
  for (let i = 0; i < 20; i++) {
    await httpRequest(`${gw.url}/su/api/generate`, { method: 'POST', body: '{"model":"su","prompt":"x","stream":false}', headers: { 'content-type': 'application/json' } });
  }
  await sleep(1_500);
  const later = (await admin('GET', '/v1/models/su')).json;
  t.equal(later.rollout.status, 'aborted');
  t.same(later.weights, { '2': 10 }, 'no weight for the undeployed version');
  t.equal(later.stable, null);
  const rollback = await admin('POST', '/v1/models/su/rollback');
  t.equal(rollback.status, 409, 'nothing to roll back to');
  t.match(await httpRequest(`${gw.adminUrl}/metrics`), { body: /sluice_rollouts_total\{model="su",result="aborted"\} 1/ });
});
