// End-to-end check of the serving side the `mlflow` runtime will supervise, without the
// gateway: `mlflow models serve -m models:/iris/1 --env-manager local` resolved through
// the real registry, its readiness, its four JSON input formats, its own error answers,
// and a clean stop of its whole process group (protocols.md A1, A2).

import { existsSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';

import { freePort } from '../fixtures/free-port.js';
import { mlflowEnv, startMlflow, venvBin, type MlflowServer, IRIS_EXPECTED_V1 as EXPECTED_V1, IRIS_RECORDS as records, IRIS_REQUEST_BODIES, IRIS_ROWS as ROWS } from '../fixtures/mlflow.js';
import { groupAlive, groupMembers, spawnGroup, waitForHttp200, type GroupProcess } from '../fixtures/process-group.js';

t.setTimeout(180_000);


let mlflow: MlflowServer;
let serve: GroupProcess | undefined;
let base: string;

t.before(async () => {
  mlflow = await startMlflow();
  t.comment(`tracking server ready in ${Math.round(mlflow.timings.serverMs)} ms; registration ${Math.round(mlflow.timings.registerMs)} ms`);
});

t.teardown(async () => {
  await serve?.stop();
  await mlflow?.stop();
});

t.test('models serve starts from the registry and answers /ping', async (t) => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const spawnedAt = performance.now();
  serve = spawnGroup(
    venvBin('mlflow'),
    ['models', 'serve', '-m', 'models:/iris/1', '-h', '127.0.0.1', '-p', String(port), '--env-manager', 'local'],
    {
      cwd: mlflow.dir,
      logFile: join(mlflow.dir, 'serve.log'),
      env: mlflowEnv({ MLFLOW_TRACKING_URI: mlflow.trackingUri, TMPDIR: mlflow.tmpDir }),
    },
  );
  const pingMs = await waitForHttp200(`${base}/ping`, { deadlineMs: 120_000, proc: serve });
  const res = await fetch(`${base}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ dataframe_records: records.slice(0, 1) }),
  });
  await res.arrayBuffer();
  const firstMs = performance.now() - spawnedAt;
  t.equal(res.status, 200, 'first prediction');
  t.comment(`mlflow models serve cold start: spawn -> /ping 200 in ${Math.round(pingMs)} ms; -> first prediction in ${Math.round(firstMs)} ms`);

  const ping = await fetch(`${base}/ping`);
  t.equal(ping.status, 200);
  t.equal(await ping.text(), '\n', '/ping body is a single newline (protocols.md A2.1)');
  t.match(ping.headers.get('server') ?? '', /uvicorn/, 'FastAPI/uvicorn scoring server');
  t.match(serve.logTail(20_000), /Running command 'exec uvicorn/, 'MLflow logs the uvicorn command it runs');
});

for (const [name, body] of Object.entries(IRIS_REQUEST_BODIES)) {
  t.test(`POST /invocations with ${name}`, async (t) => {
    const res = await fetch(`${base}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type'), /^application\/json/);
    const json = (await res.json()) as { predictions: unknown[] };
    t.same(Object.keys(json), ['predictions']);
    t.equal(json.predictions.length, ROWS.length, 'one prediction per row');
    t.same(json.predictions, EXPECTED_V1, 'iris v1 classifies one row of each class');
  });
}

t.test('MLflow answers bad bodies itself', async (t) => {
  const noKey = await fetch(`${base}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"bogus": 1}',
  });
  t.equal(noKey.status, 400);
  const noKeyBody = (await noKey.json()) as { error_code: string; message: string };
  t.equal(noKeyBody.error_code, 'BAD_REQUEST');
  t.match(noKeyBody.message, /exactly one of the input fields/);

  const notJson = await fetch(`${base}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: 'not json',
  });
  t.equal(notJson.status, 400);
  t.match(await notJson.json(), { error_code: 'BAD_REQUEST', message: /valid JSON/ });

  const plain = await fetch(`${base}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: 'x',
  });
  t.equal(plain.status, 415);
  t.match(plain.headers.get('content-type'), /^text\/plain/);
  t.match(await plain.text(), /only supports the following content types/);
});

t.test('stopping the process group leaves nothing behind', async (t) => {
  const proc = serve!;
  const before = groupMembers(proc.pid);
  t.ok(before.length >= 2, `CLI and uvicorn share the group: ${before.map((m) => m.cmd.split(' ').slice(1, 3).join(' ')).join(' | ')}`);
  const start = performance.now();
  await proc.stop();
  t.comment(`group ${proc.pid} stopped in ${Math.round(performance.now() - start)} ms`);
  t.notOk(groupAlive(proc.pid), 'no process left in the group');
  t.same(groupMembers(proc.pid), [], '/proc agrees');
  // MLflow never removes its download of the model: the supervisor must give each
  // replica a TMPDIR it cleans up itself.
  t.ok(readdirSync(mlflow.tmpDir).some((f) => existsSync(join(mlflow.tmpDir, f, 'MLmodel'))), 'model copy left in TMPDIR');
  const port = Number(new URL(base).port);
  t.equal(await connectRefused(port), true, 'port closed');
});

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}
