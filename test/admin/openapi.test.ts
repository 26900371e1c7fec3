// The admin API's OpenAPI document (GET /openapi.json, src/admin/openapi.ts) against the
// admin API itself:
// - every route registered on the admin server is documented, and every documented
//   operation is registered (method and path template, both ways), public exactly where the
//   document asks for no token;
// - the document's schemas compile (ajv, JSON Schema 2020-12, strict);
// - real answers of a running gateway, for every operation, with every status this setup can
//   reach (2xx, 400, 401, 404, 405, 409, 413, 415, 502, 503), have a documented status, content
//   type and body;
// - /docs is one page that names every operation and loads nothing from elsewhere.
// The deployment service's routes read a registry stand-in; its mlflow deployments get a
// binary that does not exist, so nothing heavy starts.

import { gzipSync } from 'node:zlib';
import t from 'tap';
import { AdminServer, registerAdminRoutes } from '../../src/admin/index.js';
import { adminApiDocument } from '../../src/admin/openapi.js';
import type { Config } from '../../src/config/index.js';
import type { ControlPlane } from '../../src/control/index.js';
import { DependencyBreakers } from '../../src/dependencies/index.js';
import type { Logger } from '../../src/telemetry/index.js';
import { startRegistryStandIn, type RegistryStandIn } from '../fixtures/registry-stand-in.js';
import { type ApiDocument, ResponseValidator } from '../helpers/openapi.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 18800-18802 belong to this file (test/admin uses 18800-18819); three, so
// that a deployment of two replicas next to two running ones finds no free port.
const TOKEN = 'openapi-test-token';
const CONFIG_KEY_SHA256 = '5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8';
const doc = adminApiDocument() as unknown as ApiDocument;
const validator = new ResponseValidator(doc);

/** `/v1/deployments/:id` -> `/v1/deployments/{id}`. */
const template = (pattern: string): string => pattern.replace(/:(\w+)/g, '{$1}');

t.test('every registered route is documented, and every documented operation is registered', async (t) => {
  // Registering reads nothing of the logger, the config or the control plane: only serving does.
  const admin = new AdminServer({ host: '127.0.0.1', port: 0, token: null, logger: {} as Logger });
  registerAdminRoutes(admin, { config: {} as Config, control: {} as ControlPlane, dependencies: new DependencyBreakers() });
  const registered = admin.routes().map((r) => `${r.method} ${template(r.pattern)}${r.public ? ' (public)' : ''}`).sort();
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => `${method.toUpperCase()} ${path}${Array.isArray(op.security) && op.security.length === 0 ? ' (public)' : ''}`)).sort();
  t.same(registered.filter((r) => !documented.includes(r)), [], 'no registered route is missing from the document');
  t.same(documented.filter((d) => !registered.includes(d)), [], 'no documented operation is missing from the server');
  t.equal(new Set(registered).size, registered.length, 'no route is registered twice');
  // The server refuses the query parameters a route does not declare: the document must name the same.
  const queryOf = (op: { parameters?: unknown }): string[] =>
    ((op.parameters ?? []) as Array<{ in: string; name: string }>).filter((p) => p.in === 'query').map((p) => p.name).sort();
  const registeredQuery = admin.routes().map((r) => `${r.method} ${template(r.pattern)}: ${[...r.query].sort().join(',')}`).sort();
  const documentedQuery = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => `${method.toUpperCase()} ${path}: ${queryOf(op as { parameters?: unknown }).join(',')}`)).sort();
  t.same(registeredQuery, documentedQuery, 'each route takes the query parameters its operation documents');
  t.ok(registered.length >= 30, `${registered.length} routes`);
});

t.test('the document\'s schemas compile', async (t) => {
  const names = validator.compileAll();
  t.ok(names.includes('DeploymentSpec') && names.includes('DeploymentView'), `${names.length} schemas compiled`);
  const spec = doc.components.schemas['DeploymentSpec'] as { required: string[]; properties: Record<string, { default?: unknown }> };
  t.same(spec.required, ['model', 'version'], 'DeploymentSpec: model and version required, the rest has defaults (from the config schema)');
  t.equal(spec.properties['replicas']?.default, 1, 'and the defaults are the config schema\'s');
});

t.test('a running gateway answers as documented', async (t) => {
  let registry: RegistryStandIn | undefined;
  let gw: Gateway | undefined;
  t.teardown(async () => {
    await gw?.stop();
    await registry?.close();
  });
  registry = await startRegistryStandIn();
  gw = await startGateway({
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    ports: { from: 18800, to: 18802 },
    mlflow: { tracking_uri: registry.trackingUri, bin: '/nonexistent/sluice-test-mlflow' },
    deployments: [{ model: 'ct', version: '1', runtime: 'sim', args: ['--token-ms', '1'] }],
    api_keys: [{ name: 'cfg', key_sha256: CONFIG_KEY_SHA256 }],
  }, { SLUICE_ADMIN_TOKEN: TOKEN });
  const base = gw.adminUrl;
  const answered = new Map<string, Set<number>>();

  /** One request; its answer must conform to what the document says of `method template` and have `status`. */
  const call = async (method: string, path: string, status: number, opts: { body?: unknown; token?: boolean; query?: string; headers?: Record<string, string> } = {}): Promise<any> => {
    const concrete = opts.query === undefined ? path : `${path}?${opts.query}`;
    const tpl = Object.keys(doc.paths).find((p) => new RegExp(`^${p.replace(/\{\w+\}/g, '[^/]+')}$`).test(path)) ?? path;
    const headers: Record<string, string> = { ...(opts.token === false ? {} : { authorization: `Bearer ${TOKEN}` }), ...opts.headers };
    const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' || opts.body instanceof Blob ? opts.body : JSON.stringify(opts.body);
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + concrete, { method, headers, body: payload, signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    const contentType = res.headers.get('content-type');
    const body: unknown = contentType?.startsWith('application/json') === true ? JSON.parse(text) : text;
    t.equal(res.status, status, `${method} ${concrete} -> ${status}${res.status === status ? '' : ` (got ${res.status}: ${text.slice(0, 300)})`}`);
    const problems = validator.problems(method, tpl, res.status, contentType, body);
    t.same(problems, [], `${method} ${concrete} ${res.status} conforms`);
    if (res.status === 401) t.equal(res.headers.get('www-authenticate'), 'Bearer', 'with WWW-Authenticate: Bearer');
    const key = `${method} ${tpl}`;
    if (!answered.has(key)) answered.set(key, new Set());
    answered.get(key)!.add(res.status);
    return body;
  };

  // Operations and the document itself.
  await call('GET', '/healthz', 200);
  await call('GET', '/readyz', 200);
  t.match(await call('GET', '/metrics', 200), /sluice_/);
  await call('GET', '/v1/costs', 200);
  await call('GET', '/v1/stats', 200);
  t.same(await call('GET', '/openapi.json', 200, { token: false }), doc, '/openapi.json is the document');
  const page = await call('GET', '/docs', 200, { token: false }) as string;
  for (const path of Object.keys(doc.paths)) t.ok(page.includes(`>${path.replace(/&/g, '&#38;')}<`), `/docs shows ${path}`);
  t.notMatch(page, /(src|href)="(https?:)?\/\//, '/docs loads nothing from elsewhere');
  const ui = await call('GET', '/ui', 200, { token: false }) as string;
  t.notMatch(ui, /(src|href)="(https?:)?\/\//, '/ui loads nothing from elsewhere');
  t.match(await call('GET', '/ui/app.js', 200, { token: false }), /\/v1\/events\/stream/, '/ui/app.js is the dashboard\'s script');
  const stream = await call('GET', '/v1/events/stream', 200, { query: 'seconds=1' }) as string;
  for (const name of ['stats', 'deployments', 'models']) t.match(stream, new RegExp(`^event: ${name}\ndata: \\{.*\\}$`, 'm'), `the live feed sends ${name}`);
  t.equal((await call('GET', '/v1/events/stream', 400, { query: 'seconds=0' })).error.field, 'seconds', 'a stream of 0 s: 400 naming seconds');

  // Without the token: 401 on every operation but the public ones.
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (Array.isArray(op.security) && op.security.length === 0) continue;
      await call(method.toUpperCase(), path.replace(/\{\w+\}/g, 'x'), 401, { token: false, ...(op.requestBody === undefined ? {} : { body: {} }) });
    }
  }
  const wrongMethod = await fetch(`${base}/v1/deployments`, { method: 'PATCH', headers: { authorization: `Bearer ${TOKEN}` } });
  t.equal(wrongMethod.status, 405, 'PATCH /v1/deployments: 405');
  t.equal(wrongMethod.headers.get('allow'), 'GET, HEAD, POST', 'with the methods it allows');
  await wrongMethod.body?.cancel();

  // Deployments. ct-1 is the config's; ct-2 comes through the API.
  await call('POST', '/v1/models/ct/rollback', 409);
  await call('GET', '/v1/deployments', 200);
  const ct2 = await call('POST', '/v1/deployments', 201, { body: { model: 'ct', version: '2', runtime: 'sim', args: ['--token-ms', '1'] }, query: 'wait=true' });
  t.equal(ct2.state, 'ready', 'ct-2 ready');
  await call('GET', '/v1/deployments/ct-2', 200);
  await call('GET', '/v1/deployments/ct-2/events', 200);
  await call('GET', '/v1/deployments/ct-2/logs', 200, { query: 'tail=5' });
  await call('GET', '/v1/deployments/ct-2/logs', 400, { query: 'tail=0' });
  await call('GET', '/v1/deployments/nope-1', 404);
  await call('POST', '/v1/deployments', 400, { body: { version: '1' } });
  await call('POST', '/v1/deployments', 400, { body: '{"model": ' });
  await call('POST', '/v1/deployments', 413, { body: JSON.stringify({ model: 'x', version: '1', args: ['a'.repeat(1024 * 1024)] }) });
  // A compressed body is not decoded: said so, rather than called invalid JSON with its raw bytes in the message.
  const gzipped = await call('POST', '/v1/deployments', 415, { body: new Blob([gzipSync(JSON.stringify({ model: 'x', version: '1' }))]), headers: { 'content-encoding': 'gzip' } });
  t.match(gzipped.error, { code: 'SLUICE_ERR_CONTENT_ENCODING', message: /Content-Encoding: gzip.*send it uncompressed/ });
  await call('POST', '/v1/deployments', 409, { body: { model: 'ct', version: '1' } });
  // A simulator that refuses its arguments exits at once: ?wait=true says so (502, with the view).
  const failed = await call('POST', '/v1/deployments', 502, { body: { model: 'bad', version: '1', args: ['--no-such-flag'] }, query: 'wait=true' });
  t.equal(failed.error.code, 'SLUICE_ERR_DEPLOY_FAILED');
  await call('DELETE', '/v1/deployments/bad-1', 200, { query: 'grace_ms=0' });
  // One port is left in 18800-18802: the second replica finds none.
  t.equal((await call('POST', '/v1/deployments', 503, { body: { model: 'big', version: '1', replicas: 2 } })).error.code, 'SLUICE_ERR_NO_FREE_PORT');
  await call('POST', '/v1/deployments/ct-2/hibernate', 400, { query: 'grace_ms=-1' });
  t.equal((await call('POST', '/v1/deployments/ct-2/hibernate', 200, { query: 'grace_ms=0' })).state, 'hibernated');
  await call('POST', '/v1/deployments/ct-2/wake', 200);
  await call('POST', '/v1/deployments/nope-1/wake', 404);

  // The deployment service's routes.
  await call('GET', '/get_model_list', 200);
  t.equal((await call('GET', '/get_model_version_list/iris', 200)).versions.length, 2);
  await call('GET', '/get_model_version_list/nope', 404);
  await call('GET', '/get_model_version_list/a%20b', 400);
  await call('GET', '/get_model_version_list/broken', 502);
  await call('GET', '/get_model_version_list/down', 503);
  t.equal((await call('POST', '/deploy/iris/1', 201, { body: { replicas: 1 } })).route, '/iris-1/');
  await call('POST', '/deploy/iris/9', 404);
  await call('POST', '/deploy/ct/1', 409);
  await call('GET', '/get_deployed_models', 200);
  await call('POST', '/undeploy/iris-1', 200, { query: 'grace_ms=0' });
  await call('POST', '/undeploy/ct-1', 409);
  await call('POST', '/undeploy/iris-1', 404);

  // Keys.
  await call('GET', '/v1/keys', 200);
  t.match((await call('POST', '/v1/keys', 201, { body: { name: 'k1', deployments: ['ct'] } })).key, /^sk-sluice-/);
  await call('POST', '/v1/keys', 201, { body: { name: 'k2', key_sha256: 'a'.repeat(64) } });
  await call('POST', '/v1/keys', 409, { body: { name: 'k1' } });
  await call('POST', '/v1/keys', 400, { body: { name: 'not a name' } });
  await call('GET', '/v1/keys/k1', 200);
  await call('GET', '/v1/keys/nope', 404);
  await call('DELETE', '/v1/keys/k1', 200);
  await call('DELETE', '/v1/keys/cfg', 409);
  await call('DELETE', '/v1/keys/k1', 404);

  // Traffic and rollouts.
  await call('GET', '/v1/models', 200);
  await call('GET', '/v1/models/nope', 404);
  await call('PUT', '/v1/models/ct/traffic', 200, { body: { weights: { 1: 90, 2: 10 }, sticky: { by: 'header', name: 'x-user' } } });
  await call('PUT', '/v1/models/ct/traffic', 400, { body: { weights: {} } });
  await call('PUT', '/v1/models/nope/traffic', 404, { body: { weights: { 1: 1 } } });
  await call('POST', '/v1/models/ct/promote', 200, { body: { version: '1' } });
  await call('POST', '/v1/models/ct/promote', 400, { body: {} });
  await call('POST', '/v1/models/ct/rollback', 200);
  await call('PUT', '/v1/models/ct/rollout', 400, { body: { canary: '2', steps: [50, 20] } });
  const started = await call('PUT', '/v1/models/ct/rollout', 201, { body: { canary: '2' } });
  const request = doc.components.schemas['RolloutRequest'] as { properties: Record<string, { default?: unknown }> };
  const documentedDefaults = Object.fromEntries(Object.entries(request.properties).filter(([, p]) => p.default !== undefined).map(([k, p]) => [k, p.default]));
  t.same(started.rollout.spec, { canary: '2', ...documentedDefaults }, 'a rollout gets the defaults the document states');
  await call('PUT', '/v1/models/ct/rollout', 409, { body: { canary: '2' } });
  await call('GET', '/v1/models/ct', 200);
  await call('DELETE', '/v1/models/ct/rollout', 200);
  await call('DELETE', '/v1/models/ct/rollout', 404);
  await call('GET', '/v1/models/ct/events', 200);

  // What schemathesis found: bodies and queries are taken as typed, unknown fields refused,
  // and each refusal names the field (never a 500, never a silent default).
  for (const [method, path, body, query, field] of [
    ['POST', '/v1/keys', { name: 'k3', deployment_limits: null }, undefined, 'deployment_limits'],
    ['POST', '/v1/keys', { name: -663 }, undefined, 'name'],
    ['POST', '/v1/deployments', { model: 'm', version: 1 }, undefined, 'version'],
    ['POST', '/v1/deployments', { model: 'm', version: '1', replicas: '2' }, undefined, 'replicas'],
    ['POST', '/v1/deployments', { model: 'm', version: '1' }, 'wait=yes', 'wait'],
    ['POST', '/v1/deployments/ct-1/hibernate', undefined, 'grace_ms=', 'grace_ms'],
    ['PUT', '/v1/models/ct/traffic', { weights: { 1: 100 }, stiky: { by: 'api_key' } }, undefined, 'stiky'],
    ['PUT', '/v1/models/ct/traffic', { weights: { 1: 100 }, sticky: { by: 'api_key', name: 'x' } }, undefined, 'sticky.name'],
    ['POST', '/v1/models/ct/promote', { version: '1', force: true }, undefined, 'force'],
    ['PUT', '/v1/models/ct/rollout', { canary: '2', interval_s: null }, undefined, 'interval_s'],
  ] as const) {
    const r = await call(method, path, 400, { ...(body === undefined ? {} : { body }), ...(query === undefined ? {} : { query }) });
    t.equal(r.error.field, field, `${method} ${path} ${JSON.stringify(body ?? query)}: names ${field}`);
  }
  await call('GET', '/v1/models/nope/events', 404);
  await call('GET', '/v1/costs', 200);
  await call('GET', '/v1/stats', 200);

  await call('DELETE', '/v1/deployments/ct-2', 200, { query: 'grace_ms=0' });
  await call('DELETE', '/v1/deployments/ct-1', 409);
  await call('DELETE', '/v1/deployments/ct-2', 404);

  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, op })));
  for (const { key, op } of documented) {
    const ok = Object.keys(op.responses).find((s) => s.startsWith('2'))!;
    t.ok(answered.get(key)?.has(Number(ok)), `${key}: a ${ok} answer was checked (${[...(answered.get(key) ?? [])].join(', ')})`);
  }
});
