// An undeployed deployment's series all leave /metrics, metrics.retired_series_ms after it
// leaves GET /v1/stats and GET /v1/costs' live deployments (kube-state-metrics drops a deleted
// object's series the same way; telemetry/retired-series tests the wait), with two workers
// each holding its own counters; a redeploy of the same id starts from zero.

import t from 'tap';
import { adminClient, waitFor, waitState } from '../helpers/control.js';
import { httpRequest, metric } from '../helpers/http.js';
import { metricsText, startGateway } from '../helpers/procs.js';

// Ports 19730-19739 belong to this file: gateway, admin, model servers.
const GATEWAY_PORT = 19730;
const ADMIN_PORT = 19731;
const PORTS = { from: 19732, to: 19739 };

const SPEC = {
  model: 'gone', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'],
  scale: { min_replicas: 0 },
  cost: { per_replica_hour: 1, per_request: 0.01 },
  policies: { cache: { enabled: true } },
};

t.test('undeploy drops every series of the deployment; a redeploy starts from zero', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    workers: 2,
    ports: PORTS,
    log: { level: 'info', access: false },
    metrics: { retired_series_ms: 1_000 },
    deployments: [{ model: 'stays', version: '1', runtime: 'sim' }],
  });
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  const chat = (): Promise<number> => httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gone-1', messages: [{ role: 'user', content: 'hi' }] }),
  }).then((r) => r.status);
  const seriesOf = (text: string): string[] => text.split('\n').filter((l) => !l.startsWith('#') && l.includes('deployment="gone-1"'));

  t.equal((await admin.post('/v1/deployments', SPEC)).status, 201, 'deployed');
  await waitState(admin, 'gone-1', 'ready');
  // A cold start too (its counter and histogram are the control plane's, not the workers').
  t.equal((await admin.post('/v1/deployments/gone-1/hibernate')).status, 200, 'hibernated');
  await waitState(admin, 'gone-1', 'hibernated');
  // One connection per request (httpRequest), so that both workers count some.
  const SENT = 6;
  for (let i = 0; i < SENT; i++) t.equal(await chat(), 200, 'answered');
  await waitFor(async () => metric(await metricsText(gw), 'sluice_requests_total', { deployment: 'gone-1', code: '200' }) === SENT, 10_000, 'every request counted');
  const before = await metricsText(gw);
  t.equal(metric(before, 'sluice_cold_starts_total', { deployment: 'gone-1' }), 1, 'a cold start');
  t.ok(seriesOf(before).length > 50, `the deployment has its series (${seriesOf(before).length})`);

  t.ok((await admin.del('/v1/deployments/gone-1')).status < 300, 'undeployed');
  await waitFor(async () => (await admin.deployment('gone-1')) === null, 30_000, 'gone-1 to be gone');
  let last = before;
  const left = await waitFor(async () => {
    last = await metricsText(gw);
    return seriesOf(last).length === 0 ? last : undefined;
  }, 10_000, 'the series of gone-1 to leave /metrics').catch((err: Error) => {
    throw new Error(`${err.message}; still there: ${[...new Set(seriesOf(last).map((l) => l.split(/[{ ]/)[0]))].join(', ')}`);
  });
  t.equal(metric(left, 'sluice_client_aborts_total', { deployment: 'stays-1' }), 0, 'another deployment keeps its series');
  const stats = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/stats`)).body) as { deployments: Array<{ deployment: string }> };
  t.notOk(stats.deployments.some((d) => d.deployment === 'gone-1'), 'as /v1/stats dropped it');

  t.equal((await admin.post('/v1/deployments', { ...SPEC, scale: { min_replicas: 1 } })).status, 201, 'deployed again');
  await waitState(admin, 'gone-1', 'ready');
  t.equal(await chat(), 200, 'answered');
  const again = await waitFor(async () => {
    const text = await metricsText(gw);
    return metric(text, 'sluice_requests_total', { deployment: 'gone-1' }, { absent: 0 }) > 0 ? text : undefined;
  }, 10_000, 'the new request counted');
  t.equal(metric(again, 'sluice_requests_total', { deployment: 'gone-1', code: '200' }), 1, 'requests start from zero');
  t.equal(metric(again, 'sluice_cost_usd_total', { deployment: 'gone-1', kind: 'requests' }), 0.01, 'so does its cost');
  t.equal(metric(again, 'sluice_cold_starts_total', { deployment: 'gone-1' }, { absent: 0 }), 0, 'and its cold starts');
});
