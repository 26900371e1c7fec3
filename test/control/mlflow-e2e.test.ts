// MLflow for real, end to end through the gateway: the registry endpoints of the admin
// port list what a real `mlflow server` holds, `POST /deploy/iris/1` starts
// `mlflow models serve` on an allocated port, `/iris-1/invocations` answers every
// documented input format, MLflow's own errors pass through unchanged, and undeploy frees
// the port and the route. Cold starts (deploy call -> first successful prediction) of an
// MLflow deployment and of a simulator deployment are measured and printed.

import { delimiter } from 'node:path';
import t from 'tap';
import { startMlflow, VENV_BIN, type MlflowServer, IRIS_COLUMNS as COLUMNS, IRIS_EXPECTED_V1 as EXPECTED_V1, IRIS_RECORDS as records, IRIS_REQUEST_BODIES, IRIS_ROWS as ROWS } from '../fixtures/mlflow.js';
import { startGateway, type Gateway } from '../helpers/procs.js';
import {
  adminClient, assertNoServersLeft, canBind, groupPids, gwRequest, PidLog, reapServers, sleep, type AdminClient, type GwReply,
} from '../helpers/control.js';

t.setTimeout(420_000);

// Replica ports 18600-18619 belong to this file.
const RANGE = { from: 18600, to: 18619 };
const pids = new PidLog();

let mlflow: MlflowServer;
let gw: Gateway;
let admin: AdminClient;
let replica: { port: number; pid: number };

t.before(async () => {
  mlflow = await startMlflow();
  t.comment(`tracking server ready in ${Math.round(mlflow.timings.serverMs)} ms; registration ${Math.round(mlflow.timings.registerMs)} ms`);
  // The gateway runs as an operator would start it: the virtualenv is not activated.
  const path = (process.env.PATH ?? '').split(delimiter).filter((p) => p !== VENV_BIN).join(delimiter);
  gw = await startGateway(
    { ports: RANGE, mlflow: { tracking_uri: mlflow.trackingUri } },
    // TMPDIR: `mlflow models serve` leaves its model download there; the fixture removes it.
    { PATH: path, VIRTUAL_ENV: '', MLFLOW_TRACKING_URI: mlflow.trackingUri, TMPDIR: mlflow.tmpDir },
    false,
  );
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
  await mlflow?.stop();
});

async function registry(path: string): Promise<any> {
  const res = await fetch(`${mlflow.trackingUri}/api/2.0/mlflow${path}`);
  if (res.status !== 200) throw new Error(`registry ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const invoke = (body: unknown, headers: Record<string, string> = {}, port?: number): Promise<GwReply> =>
  gwRequest(port === undefined ? `${gw.url}/iris-1/invocations` : `http://127.0.0.1:${port}/invocations`, {
    method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers },
  });

t.test('the registry endpoints return what the registry holds', async (t) => {
  const list = await admin.get('/get_model_list');
  t.equal(list.status, 200, list.text.slice(0, 300));
  const held = (await registry('/registered-models/search?max_results=1000')) as { registered_models?: Array<{ name: string; latest_versions?: Array<{ version: string }> }> };
  const names = (held.registered_models ?? []).map((m) => m.name).sort();
  t.same(list.body.models.map((m: { name: string }) => m.name).sort(), names, `the same models (${names.join(', ')})`);
  const iris = list.body.models.find((m: { name: string }) => m.name === 'iris');
  const heldIris = held.registered_models!.find((m) => m.name === 'iris')!;
  t.same([...iris.latest_versions].sort(), (heldIris.latest_versions ?? []).map((v) => v.version).sort(), 'iris\'s latest versions as the registry has them');

  const versions = await admin.get('/get_model_version_list/iris');
  t.equal(versions.status, 200);
  const heldVersions = (await registry(`/model-versions/search?max_results=1000&filter=${encodeURIComponent("name = 'iris'")}`)) as { model_versions: Array<{ version: string; status: string; run_id: string }> };
  t.same(versions.body.versions.map((v: { version: string }) => v.version), heldVersions.model_versions.map((v) => v.version).sort((a, b) => Number(a) - Number(b)), 'the same versions');
  t.same(versions.body.versions.map((v: { version: string }) => v.version), mlflow.registered.versions, 'iris 1 and 2, as registered');
  t.match(versions.body.versions, [{ version: '1', status: 'READY', deployed: false }, { version: '2', status: 'READY', deployed: false }]);
  for (const v of versions.body.versions) {
    t.equal(v.run_id, heldVersions.model_versions.find((h) => h.version === v.version)!.run_id, `version ${v.version}: the registry's run id`);
  }
  const unknown = await admin.get('/get_model_version_list/no-such-model');
  t.equal(unknown.status, 404, 'an unknown model: 404');
  t.equal(unknown.body?.error?.code, 'SLUICE_ERR_NOT_FOUND');
});

t.test('POST /deploy/iris/1 then /iris-1/invocations: cold start', async (t) => {
  const t0 = performance.now();
  const r = await admin.post('/deploy/iris/1');
  const answeredMs = performance.now() - t0;
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.match(r.body, { model: 'iris', version: '1', route: '/iris-1/', runtime: 'mlflow', state: 'starting' }, 'answers at once with starting');
  t.ok(r.body.port >= RANGE.from && r.body.port <= RANGE.to, `port ${r.body.port} from the range`);

  let first: GwReply | undefined;
  const statuses = new Set<number>();
  while (performance.now() - t0 < 180_000) {
    const res = await invoke({ dataframe_records: records.slice(0, 1) });
    if (res.status === 200) {
      first = res;
      break;
    }
    statuses.add(res.status);
    const d = await admin.deployment('iris-1');
    pids.note(d);
    if (d?.state === 'failed') throw new Error(`iris-1 failed: ${d.last_error}`);
    await sleep(100);
  }
  const coldMs = performance.now() - t0;
  t.ok(first, 'a first prediction arrived');
  t.same(first?.json, { predictions: [0] });
  t.same([...statuses].filter((s) => s !== 503), [], 'before that, only 503 (no ready replica)');
  t.comment(`cold start, MLflow deployment: deploy call answered in ${Math.round(answeredMs)} ms; first successful prediction after ${Math.round(coldMs)} ms`);

  const d = (await admin.deployment('iris-1'))!;
  pids.note(d);
  t.equal(d.state, 'ready');
  replica = { port: d.replicas[0]!.port, pid: d.replicas[0]!.pid! };
  t.ok(groupPids(replica.pid).length >= 2, 'mlflow CLI and its uvicorn child run in the replica\'s process group');
  const deployed = await admin.get('/get_deployed_models');
  t.match(deployed.body.deployed_models, [{ model: 'iris', version: '1', port: replica.port, route: '/iris-1/', state: 'ready', runtime: 'mlflow' }]);
  t.match((await admin.get('/get_model_version_list/iris')).body.versions, [{ version: '1', deployed: true }, { version: '2', deployed: false }]);
});

for (const [name, body] of Object.entries(IRIS_REQUEST_BODIES)) {
  t.test(`/iris-1/invocations with ${name}`, async (t) => {
    const res = await invoke(body);
    t.equal(res.status, 200, res.text.slice(0, 300));
    t.match(res.headers['content-type'], /^application\/json/);
    t.same(res.json, { predictions: EXPECTED_V1 }, 'the model\'s predictions, one per row');
  });
}

t.test('MLflow\'s own errors pass through unchanged', async (t) => {
  const cases: Array<[string, string, Record<string, string>]> = [
    ['no input field', '{"bogus": 1}', {}],
    ['two input fields', JSON.stringify({ instances: records, inputs: records }), {}],
    ['invalid JSON', 'not json', {}],
    ['a wrong schema', JSON.stringify({ dataframe_records: [{ nope: 1 }] }), {}],
    ['an unsupported content type', 'x', { 'content-type': 'text/plain' }],
  ];
  for (const [what, body, headers] of cases) {
    const direct = await invoke(body, headers, replica.port);
    const via = await invoke(body, headers);
    t.ok(direct.status >= 400, `${what}: MLflow answers ${direct.status}`);
    t.equal(via.status, direct.status, `${what}: same status through the gateway`);
    t.equal(via.text, direct.text, `${what}: same body`);
    t.equal(via.headers['content-type'], direct.headers['content-type'], `${what}: same content type`);
  }
  const bad = await invoke('{"bogus": 1}');
  t.equal(bad.status, 400);
  t.match(bad.json, { error_code: 'BAD_REQUEST', message: /exactly one of the input fields/ }, 'MLflow\'s error body, not the gateway\'s');
});

t.test('the deployment service endpoints refuse what the registry does not hold', async (t) => {
  const missing = await admin.post('/deploy/iris/99');
  t.equal(missing.status, 404, 'a version the registry does not hold: 404');
  t.match(missing.body?.error?.message, /not in the registry/);
  t.equal((await admin.post('/deploy/no-such-model/1')).status, 404, 'an unknown model: 404');
  const again = await admin.post('/deploy/iris/1');
  t.equal(again.status, 409, 'deploying iris 1 twice: 409');
  t.same((await admin.list()).map((d) => d.id), ['iris-1'], 'nothing else was registered');
});

t.test('POST /deploy/iris/<alias> deploys the version the alias names now', async (t) => {
  const set = await fetch(`${mlflow.trackingUri}/api/2.0/mlflow/registered-models/alias`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'iris', alias: 'champion', version: '2' }),
  });
  t.equal(set.status, 200, `alias set: ${await set.text()}`);
  const r = await admin.post('/deploy/iris/champion?wait=true');
  pids.note(r.body);
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.match(r.body, { model: 'iris', version: '2', route: '/iris-2/', state: 'ready' }, 'deployed as the version the alias names');
  const res = await gwRequest(`${gw.url}/iris-2/invocations`, { method: 'POST', body: JSON.stringify({ dataframe_records: records }), headers: { 'content-type': 'application/json' } });
  t.equal(res.status, 200, 'and it predicts');
  const latest = await admin.post('/deploy/iris/latest');
  t.equal(latest.status, 409, 'latest is version 2 too: already deployed');
  const none = await admin.post('/deploy/iris/nobody');
  t.equal(none.status, 404, 'an alias the model does not have: 404');
  t.match(none.body?.error?.message, /no alias 'nobody'/);
  t.equal((await admin.post('/deploy/no-such-model/champion')).status, 404, 'an unknown model: 404');
  t.equal((await admin.post('/undeploy/iris-2')).status, 200);
});

t.test('POST /undeploy/iris-1 frees the port and the route', async (t) => {
  const r = await admin.post('/undeploy/iris-1');
  t.equal(r.status, 200);
  t.same(r.body, { id: 'iris-1', state: 'stopped' });
  t.same(groupPids(replica.pid), [], 'no MLflow process is left in the group');
  t.equal(await canBind(replica.port), true, `port ${replica.port} is free`);
  const res = await invoke({ dataframe_records: records });
  t.equal(res.status, 404, '/iris-1/invocations answers 404');
  t.equal(res.json?.error?.code, 'SLUICE_ERR_NO_ROUTE');
  t.same((await admin.get('/get_deployed_models')).body.deployed_models, []);
});

t.test('cold start of a simulator deployment', async (t) => {
  const t0 = performance.now();
  const r = await admin.post('/v1/deployments', { model: 'coldsim', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'] });
  pids.note(r.body);
  t.equal(r.status, 201);
  let first: GwReply | undefined;
  while (performance.now() - t0 < 30_000) {
    const res = await gwRequest(`${gw.url}/coldsim-1/invocations`, { body: { dataframe_split: { columns: COLUMNS, data: ROWS } } });
    if (res.status === 200) {
      first = res;
      break;
    }
    await sleep(10);
  }
  const coldMs = performance.now() - t0;
  t.ok(first, 'a first prediction arrived');
  t.match(first?.json, { predictions: Array });
  t.comment(`cold start, simulator deployment: first successful prediction after ${Math.round(coldMs)} ms`);
  t.equal((await admin.del('/v1/deployments/coldsim-1?grace_ms=0')).status, 200);
});

t.test('stopping the gateway stops every model server it started', async (t) => {
  t.equal(await gw.stop(), 0, 'the gateway exits 0 on SIGTERM');
  await assertNoServersLeft(t, pids.pids, RANGE);
});
