// MlflowRegistry against a real `mlflow server` on SQLite (fixture), plus a few fault
// cases (5xx, HTML 404, stalls, pagination) against a small local stand-in.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import t, { type Test } from 'tap';

import { MlflowRegistry, nameFilter, RegistryError } from '../../src/registry/index.js';
import { freePort } from '../fixtures/free-port.js';
import { startMlflow, type MlflowServer } from '../fixtures/mlflow.js';

// MLflow start-up plus model registration takes 10-30 s on 2 cores; tap's default is 30 s.
t.setTimeout(180_000);

let mlflow: MlflowServer;

t.before(async () => {
  mlflow = await startMlflow();
  t.comment(
    `mlflow server ready in ${Math.round(mlflow.timings.serverMs)} ms, ` +
      `iris registered in ${Math.round(mlflow.timings.registerMs)} ms (${mlflow.trackingUri})`,
  );
});

t.teardown(async () => {
  await mlflow?.stop();
});

t.test('listModels returns iris with its latest version', async (t) => {
  const reg = new MlflowRegistry({ trackingUri: mlflow.trackingUri });
  const models = await reg.listModels();
  const iris = models.find((m) => m.name === 'iris');
  t.ok(iris, 'iris is listed');
  t.ok(iris!.latest_versions.length >= 1, 'iris has versions');
  t.equal(typeof iris!.latest_versions[0]!.version, 'string', 'version is a string');
  t.equal(iris!.latest_versions[0]!.version, '2');
  t.equal(typeof iris!.creation_timestamp, 'number');
  t.same(iris!.aliases, [], 'absent list fields become []');
});

t.test('listVersions(iris) returns 1 and 2, ready, with sources', async (t) => {
  const reg = new MlflowRegistry({ trackingUri: mlflow.trackingUri });
  const versions = await reg.listVersions('iris');
  t.same(
    versions.map((v) => v.version),
    ['1', '2'],
  );
  for (const v of versions) {
    t.equal(v.name, 'iris');
    t.equal(v.status, 'READY');
    t.match(v.source, /^(models|runs|mlflow-artifacts):/);
  }
  t.same(await reg.listVersions('no-such-model'), [], 'unknown model: empty list (server answers {})');
  t.same(mlflow.registered, { model: 'iris', versions: ['1', '2'] }, 'fixture reports what it registered');
});

t.test('getVersion finds existing versions and returns null for missing ones', async (t) => {
  const reg = new MlflowRegistry({ trackingUri: mlflow.trackingUri });
  const v1 = await reg.getVersion('iris', '1');
  t.equal(v1?.version, '1');
  t.equal(v1?.name, 'iris');
  t.equal(await reg.getVersion('iris', '99'), null, 'missing version');
  t.equal(await reg.getVersion('no-such-model', '1'), null, 'missing model');
  t.equal(await reg.getVersion('iris', 'latest'), null, 'non-integer version (MLflow answers 400)');
});

t.test('names with quotes are filtered correctly against the real server', async (t) => {
  // MLflow's filter grammar has no escapes; check both quoting paths on the real parser.
  const reg = new MlflowRegistry({ trackingUri: mlflow.trackingUri });
  const v1 = await reg.getVersion('iris', '1');
  const runId = v1!.run_id!;
  for (const name of ["o'brien", 'both\'"q']) {
    await post(`${mlflow.trackingUri}/api/2.0/mlflow/registered-models/create`, { name });
    await post(`${mlflow.trackingUri}/api/2.0/mlflow/model-versions/create`, {
      name,
      source: `runs:/${runId}/model`,
      run_id: runId,
    });
    const versions = await reg.listVersions(name);
    t.same(
      versions.map((v) => [v.name, v.version]),
      [[name, '1']],
      `versions of ${name}`,
    );
  }
  t.same(
    (await reg.listVersions('iris')).map((v) => v.version),
    ['1', '2'],
    'other models do not leak into the unfiltered path',
  );
  const names = (await reg.listModels()).map((m) => m.name);
  t.ok(names.includes("o'brien") && names.includes('iris'), 'listModels sees all');
});

t.test('nameFilter picks a quote the name does not contain', async (t) => {
  t.equal(nameFilter('iris'), "name = 'iris'");
  t.equal(nameFilter("o'brien"), 'name = "o\'brien"');
  t.equal(nameFilter('a"b'), "name = 'a\"b'");
  t.equal(nameFilter('a\'"b'), null);
});

t.test('a registry on a closed port fails fast with the unavailable code', async (t) => {
  const port = await freePort();
  const reg = new MlflowRegistry({ trackingUri: `http://127.0.0.1:${port}`, timeoutMs: 5_000 });
  const start = performance.now();
  const calls: (() => Promise<unknown>)[] = [() => reg.listModels(), () => reg.listVersions('iris'), () => reg.getVersion('iris', '1')];
  for (const call of calls) {
    await t.rejects(call(), { name: 'RegistryError', code: 'SLUICE_ERR_REGISTRY_UNAVAILABLE', status: 503 });
  }
  const ms = performance.now() - start;
  t.ok(ms < 2_000, `three refused calls took ${Math.round(ms)} ms`);
  const err = await reg.listModels().catch((e: unknown) => e);
  t.ok(err instanceof RegistryError);
  t.match((err as Error).message, /ECONNREFUSED/);
});

t.test('constructor rejects bad options up front', async (t) => {
  t.throws(() => new MlflowRegistry({ trackingUri: 'not a url' }), TypeError);
  t.throws(() => new MlflowRegistry({ trackingUri: 'ftp://x' }), TypeError);
  t.throws(() => new MlflowRegistry({ trackingUri: 'http://x', token: 'a', username: 'u', password: 'p' }), TypeError);
  t.throws(() => new MlflowRegistry({ trackingUri: 'http://x', username: 'u' }), TypeError);
  t.throws(() => new MlflowRegistry({ trackingUri: 'http://x', timeoutMs: 0 }), TypeError);
});

// --- fault cases against a stand-in server --------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function standIn(t: Test, handler: Handler): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return `http://127.0.0.1:${addr.port}`;
}

t.test('pagination follows next_page_token until it is absent', async (t) => {
  const seen: string[] = [];
  const uri = await standIn(t, (req, res) => {
    const url = new URL(req.url!, 'http://x');
    seen.push(`${url.pathname}?${url.searchParams.toString()}`);
    const token = url.searchParams.get('page_token');
    res.setHeader('content-type', 'application/json');
    if (url.pathname.endsWith('/registered-models/search')) {
      if (token === null) res.end(JSON.stringify({ registered_models: [{ name: 'a' }], next_page_token: 'p2' }));
      else if (token === 'p2') res.end(JSON.stringify({ registered_models: [{ name: 'b' }], next_page_token: 'p3' }));
      else res.end('{}');
    } else if (url.pathname.endsWith('/registered-models/get')) {
      res.end(JSON.stringify({ registered_model: { name: 'm', aliases: [{ alias: 'prod', version: '9' }] } }));
    } else {
      if (token === null) res.end(JSON.stringify({ model_versions: [{ name: 'm', version: '10' }], next_page_token: 'x' }));
      else res.end(JSON.stringify({ model_versions: [{ name: 'm', version: 9 }, { name: 'm', version: '2' }] }));
    }
  });
  const reg = new MlflowRegistry({ trackingUri: `${uri}/prefix/`, token: 'tok' });
  t.same(
    (await reg.listModels()).map((m) => m.name),
    ['a', 'b'],
  );
  t.same(
    (await reg.listVersions('m')).map((v) => [v.version, v.aliases]),
    [['2', []], ['9', ['prod']], ['10', []]],
    'numeric versions coerced to strings and sorted numerically; aliases from the registered model',
  );
  t.equal(seen[0], '/prefix/api/2.0/mlflow/registered-models/search?max_results=1000');
  t.equal(seen[2], '/prefix/api/2.0/mlflow/registered-models/search?max_results=1000&page_token=p3');
  t.match(seen[3], /model-versions\/search\?max_results=\d+&filter=name\+%3D\+%27m%27$/);
});

t.test('auth headers: bearer token and basic from options or URL', async (t) => {
  const auths: (string | undefined)[] = [];
  const uri = await standIn(t, (req, res) => {
    auths.push(req.headers.authorization);
    res.setHeader('content-type', 'application/json');
    res.end('{}');
  });
  await new MlflowRegistry({ trackingUri: uri, token: 'abc' }).listModels();
  await new MlflowRegistry({ trackingUri: uri, username: 'u', password: 'p:w' }).listModels();
  await new MlflowRegistry({ trackingUri: uri.replace('http://', 'http://us%40r:s3cret@') }).listModels();
  t.same(auths, [
    'Bearer abc',
    `Basic ${Buffer.from('u:p:w').toString('base64')}`,
    `Basic ${Buffer.from('us@r:s3cret').toString('base64')}`,
  ]);
});

t.test('error classification', async (t) => {
  const uri = await standIn(t, (req, res) => {
    const path = new URL(req.url!, 'http://x').pathname;
    if (path.startsWith('/500')) {
      res.statusCode = 500;
      res.end('{"error_code":"INTERNAL_ERROR","message":"db is locked"}');
    } else if (path.startsWith('/html404')) {
      res.statusCode = 404;
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><title>404 Not Found</title>');
    } else if (path.startsWith('/403')) {
      res.statusCode = 403;
      res.setHeader('content-type', 'text/plain');
      res.end('Invalid Host header - possible DNS rebinding attack detected');
    } else if (path.startsWith('/400')) {
      res.statusCode = 400;
      res.end('{"error_code":"INVALID_PARAMETER_VALUE","message":"bad filter"}');
    } else if (path.startsWith('/notjson')) {
      res.end('<html>proxy login</html>');
    } else if (path.startsWith('/array')) {
      res.end('[]');
    } else if (path.startsWith('/shape')) {
      res.end('{"registered_models": {"name": "x"}}');
    } else if (path.startsWith('/stall')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"registered_models": [');
      // never ends: the body read must time out
    }
  });
  const at = (p: string, timeoutMs = 2_000) => new MlflowRegistry({ trackingUri: `${uri}${p}`, timeoutMs });
  await t.rejects(at('/500').listModels(), { code: 'SLUICE_ERR_REGISTRY_UNAVAILABLE', httpStatus: 500, mlflowErrorCode: 'INTERNAL_ERROR' });
  await t.rejects(at('/html404').listModels(), { code: 'SLUICE_ERR_REGISTRY_BAD_RESPONSE', httpStatus: 404, status: 502 });
  await t.rejects(at('/html404').getVersion('iris', '1'), { code: 'SLUICE_ERR_REGISTRY_BAD_RESPONSE' }, 'an HTML 404 is not "no such version"');
  await t.rejects(at('/403').listModels(), { code: 'SLUICE_ERR_REGISTRY_UNAUTHORIZED', message: /DNS rebinding/ });
  await t.rejects(at('/400').listVersions('iris'), { code: 'SLUICE_ERR_REGISTRY_REJECTED', mlflowErrorCode: 'INVALID_PARAMETER_VALUE' });
  await t.rejects(at('/notjson').listModels(), { code: 'SLUICE_ERR_REGISTRY_BAD_RESPONSE' });
  await t.rejects(at('/array').listModels(), { code: 'SLUICE_ERR_REGISTRY_BAD_RESPONSE' });
  await t.rejects(at('/shape').listModels(), { code: 'SLUICE_ERR_REGISTRY_BAD_RESPONSE' });
  const start = performance.now();
  await t.rejects(at('/stall', 300).listModels(), { code: 'SLUICE_ERR_REGISTRY_UNAVAILABLE', message: /300 ms/ });
  t.ok(performance.now() - start < 2_000, 'a stalled body times out');
});

async function post(url: string, body: unknown): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url} -> ${res.status}: ${text}`);
}
