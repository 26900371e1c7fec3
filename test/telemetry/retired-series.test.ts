// An undeployed deployment's series stay in /metrics for metrics.retired_series_ms after its
// drain, with what its last requests added: a stream that ended during the drain, after
// the last scrape, is counted in the next one. (The series left with the workers' stats,
// so those increments were never scraped.) Then they leave.

import t from 'tap';
import { adminClient, reapServers, waitFor, waitState } from '../helpers/control.js';
import { metricsText, sample, startGateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 23910-23914 belong to this file.
const RANGE = { from: 23910, to: 23914 };
const KEEP_MS = 4_000;

t.test('a deployment undeployed under a stream keeps its final counts in /metrics, then they leave', async (t) => {
  const gw = await startGateway({
    workers: 2, ports: RANGE, metrics: { retired_series_ms: KEEP_MS }, deployments: [{ model: 'stays', version: '1', runtime: 'sim' }],
  });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments', { model: 'leaving', version: '1', runtime: 'sim', args: ['--tokens', '20', '--ttft-ms', '1', '--token-ms', '40'] })).status, 201);
  await waitState(admin, 'leaving-1', 'ready');
  const ok = async (): Promise<number | undefined> => sample(await metricsText(gw), 'sluice_requests_total', { deployment: 'leaving-1', code: '200' });
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${gw.url}/leaving-1/api/tags`)).status, 200);
  t.equal(await ok(), 3, 'the last scrape before the undeploy');

  const stream = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'leaving-1', stream: true, messages: [{ role: 'user', content: 'go on' }] }),
  });
  const reader = stream.body!.getReader();
  await reader.read();
  const undeploy = admin.del('/v1/deployments/leaving-1');
  while (!(await reader.read()).done);
  const undeployed = await undeploy;
  t.ok(undeployed.status < 300, `undeployed: ${undeployed.status} ${JSON.stringify(undeployed.body)}`);
  await waitFor(async () => (await admin.deployment('leaving-1')) === null, 30_000, 'leaving-1 to be gone');
  const gone = Date.now();

  t.equal(await ok(), 4, 'the stream that ended during the drain is in the next scrape');
  const text = await metricsText(gw);
  t.equal(sample(text, 'sluice_request_duration_seconds_count', { deployment: 'leaving-1' }), 4, 'its histograms too');
  await waitFor(async () => (await ok()) === undefined, KEEP_MS + 10_000, 'its series to leave');
  t.ok(Date.now() - gone >= KEEP_MS - 1_000, `kept for about retired_series_ms (${Date.now() - gone} ms)`);
});
