// Scale to zero with a real MLflow model: iris hibernates after 2 s without a request
// (`mlflow models serve` stops), then 50 concurrent /invocations are all held and answered
// by the one server their first request woke, and the cold start is in /metrics.

import { delimiter } from 'node:path';
import t from 'tap';
import { IRIS_EXPECTED_V1, IRIS_REQUEST_BODIES, startMlflow, VENV_BIN, type MlflowServer } from '../fixtures/mlflow.js';
import { adminClient, gwRequest, reapServers, serversInRange, waitFor, waitState, type AdminClient } from '../helpers/control.js';
import { jsonLogs, metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(420_000);

// Replica ports 18940-18949 belong to this file.
const RANGE = { from: 18940, to: 18949 };
let mlflow: MlflowServer;
let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  mlflow = await startMlflow();
  const path = (process.env.PATH ?? '').split(delimiter).filter((p) => p !== VENV_BIN).join(delimiter);
  gw = await startGateway(
    {
      ports: RANGE, mlflow: { tracking_uri: mlflow.trackingUri }, log: { level: 'info', access: false },
      deployments: [{ model: 'iris', version: '1', runtime: 'mlflow', scale: { min_replicas: 0, idle_timeout_s: 2 } }],
    },
    { PATH: path, VIRTUAL_ENV: '', MLFLOW_TRACKING_URI: mlflow.trackingUri, TMPDIR: mlflow.tmpDir },
    false,
  );
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
  await mlflow?.stop();
});

const groups = (): number => new Set(serversInRange(RANGE.from, RANGE.to).map((p) => p.pgid)).size;

t.test('iris hibernates after 2 s idle, and 50 concurrent predictions wake it once', async (t) => {
  await waitState(admin, 'iris-1', 'ready', 180_000);
  t.equal(groups(), 1, 'one mlflow models serve running');
  await waitState(admin, 'iris-1', 'hibernated', 30_000);
  await waitFor(() => groups() === 0, 30_000, 'mlflow models serve to stop');
  t.pass('no MLflow server runs while hibernated');

  const body = JSON.stringify(IRIS_REQUEST_BODIES.dataframe_split);
  const started = Date.now();
  const replies = await Promise.all(Array.from({ length: 50 }, () => gwRequest(`${gw.url}/iris-1/invocations`, {
    method: 'POST', body, headers: { 'content-type': 'application/json' }, timeoutMs: 180_000,
  })));
  t.comment(`cold start to 50 answers: ${Date.now() - started} ms`);
  t.same(replies.map((r) => r.status), new Array(50).fill(200), 'every held request answered 200');
  for (const r of replies) t.same(r.json, { predictions: IRIS_EXPECTED_V1 });
  t.equal(groups(), 1, 'exactly one mlflow models serve was started');
  t.equal(jsonLogs(gw).filter((l) => l.msg === 'waking' && l.deployment === 'iris-1').length, 1, 'one wake');
  const text = await metricsText(gw);
  t.match(text, /^sluice_cold_starts_total\{deployment="iris-1"\} 1$/m);
  t.match(text, /^sluice_cold_start_seconds_count\{deployment="iris-1"\} 1$/m, 'the cold-start histogram recorded it');
});
