// The admin API's front door: bearer token (config or env), public health endpoints,
// loopback-only binding without a token, 400s naming the bad field, argv templates that
// never meet a shell, and the logs endpoint with its bounded buffer.

import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort } from '../fixtures/free-port.js';
import { startGateway, type Gateway } from '../helpers/procs.js';
import {
  adminClient, assertNoServersLeft, gwRequest, listenAddresses, PidLog, reapServers, serverCommand, serversInRange, waitFor, writeServerScript, type AdminClient,
} from '../helpers/control.js';

t.setTimeout(120_000);

// Replica ports 18500-18519 belong to this file.
const RANGE = { from: 18500, to: 18519 };
const TOKEN = 'admin-s3cret-token-for-tests';
const dir = t.testdir();
const script = writeServerScript(dir);
const pids = new PidLog();

let gw: Gateway;
let admin: AdminClient;
let anon: AdminClient;

t.before(async () => {
  gw = await startGateway({ admin: { host: '127.0.0.1', port: 0, token: TOKEN }, ports: { from: 18500, to: 18509 } }, {}, false);
  admin = adminClient(gw.adminUrl, TOKEN);
  anon = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('admin endpoints need the bearer token; health endpoints are public', async (t) => {
  const none = await anon.get('/v1/deployments');
  t.equal(none.status, 401, 'no token: 401');
  t.equal(none.body?.error?.code, 'SLUICE_ERR_UNAUTHORIZED');
  t.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
  t.match(none.headers.get('content-type') ?? '', /^application\/json/);

  for (const header of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, 'Bearer ', `Basic ${TOKEN}`, TOKEN, `Bearer x`]) {
    const r = await anon.request('GET', '/v1/deployments', undefined, { authorization: header });
    t.equal(r.status, 401, `401 with Authorization: ${JSON.stringify(header.slice(0, 12))}...`);
  }
  const ok = await admin.get('/v1/deployments');
  t.equal(ok.status, 200, 'right token: 200');
  t.same(ok.body, { deployments: [] });

  for (const [method, path] of [['GET', '/metrics'], ['GET', '/get_deployed_models'], ['GET', '/v1/deployments/x-1'], ['GET', '/v1/deployments/x-1/logs'], ['DELETE', '/v1/deployments/x-1'], ['POST', '/undeploy/x-1']] as const) {
    t.equal((await anon.request(method, path)).status, 401, `${method} ${path} without token: 401`);
  }
  const sneaky = await anon.post('/v1/deployments', { model: 'sneaky', version: '1', runtime: 'sim' });
  t.equal(sneaky.status, 401, 'deploy without token: 401');
  t.same(await admin.list(), [], 'and nothing was deployed');

  const health = await anon.get('/healthz');
  t.equal(health.status, 200, '/healthz is public');
  t.equal(health.body.status, 'ok');
  const ready = await anon.get('/readyz');
  t.ok(ready.status === 200 || ready.status === 503, `/readyz is public (${ready.status})`);
  t.not(ready.status, 401);
});

t.test('SLUICE_ADMIN_TOKEN sets the token from the environment', async (t) => {
  const g = await startGateway({ ports: { from: 18510, to: 18511 } }, { SLUICE_ADMIN_TOKEN: 'from-env-token' }, false);
  t.teardown(() => g.stop());
  t.equal((await adminClient(g.adminUrl).get('/v1/deployments')).status, 401);
  t.equal((await adminClient(g.adminUrl, 'wrong').get('/v1/deployments')).status, 401);
  t.equal((await adminClient(g.adminUrl, 'from-env-token').get('/v1/deployments')).status, 200);
  t.equal((await adminClient(g.adminUrl).get('/healthz')).status, 200);
});

t.test('without a token the admin API listens on loopback only, even if 0.0.0.0 is configured', async (t) => {
  const g = await startGateway({ admin: { host: '0.0.0.0', port: 0 }, ports: { from: 18512, to: 18513 } }, {}, false);
  t.teardown(() => g.stop());
  t.same(listenAddresses(g.adminPort), ['127.0.0.1'], 'the admin socket is bound to 127.0.0.1 (/proc/net/tcp)');
  t.ok(g.lines.some((l) => /no admin token configured/.test(l)), 'a warning says why');
  t.equal((await adminClient(g.adminUrl).get('/v1/deployments')).status, 200, 'reachable on loopback without a token');
  const external = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && i.family === 'IPv4' && !i.internal);
  if (external === undefined) {
    t.comment('no non-loopback IPv4 address on this machine: connection check skipped');
  } else {
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect({ host: external.address, port: g.adminPort });
      s.setTimeout(2000, () => {
        s.destroy();
        resolve(true);
      });
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    t.ok(refused, `not reachable on ${external.address}`);
  }
});

t.test('bad bodies and names get 400 naming the field; nothing is registered', async (t) => {
  const cases: Array<[string, unknown, string]> = [
    ['path tricks in the model', { model: '../x', version: '1' }, 'model'],
    ['a slash in the model', { model: 'a/b', version: '1' }, 'model'],
    ['shell characters in the model', { model: 'x;touch', version: '1' }, 'model'],
    ['a hyphen in the version', { model: 'm', version: '1-2' }, 'version'],
    ['a version with a slash', { model: 'm', version: '../1' }, 'version'],
    ['no model', { version: '1' }, 'model'],
    ['an unknown runtime', { model: 'm', version: '1', runtime: 'docker' }, 'runtime'],
    ['an unknown key', { model: 'm', version: '1', runtime: 'sim', bogus: true }, 'bogus'],
    ['an unknown upstream key', { model: 'm', version: '1', upstream: { connect_timeout: 5 } }, 'upstream.connect_timeout'],
    ['a bad upstream timeout', { model: 'm', version: '1', upstream: { headers_timeout_ms: -1 } }, 'upstream.headers_timeout_ms'],
    ['zero replicas', { model: 'm', version: '1', replicas: 0 }, 'replicas'],
    ['a start timeout that is not a number', { model: 'm', version: '1', start_timeout_ms: 'soon' }, 'start_timeout_ms'],
    ['a command given as a shell string', { model: 'm', version: '1', runtime: 'command', command: 'python -m server' }, 'command'],
    ['a command runtime without command', { model: 'm', version: '1', runtime: 'command' }, 'command'],
    ['a llamacpp runtime without model_path', { model: 'm', version: '1', runtime: 'llamacpp' }, 'model_path'],
    ['a llamacpp model_path that is no file', { model: 'm', version: '1', runtime: 'llamacpp', model_path: '/nonexistent/m.gguf' }, 'model_path'],
    ['a remote runtime without urls', { model: 'm', version: '1', runtime: 'remote' }, 'urls'],
    ['a non-string env value', { model: 'm', version: '1', env: { A: { b: 1 } } }, 'env.A'],
    ['a readiness path that is not a path', { model: 'm', version: '1', readiness_path: 'ping' }, 'readiness_path'],
  ];
  for (const [what, body, field] of cases) {
    const r = await admin.post('/v1/deployments', body);
    t.equal(r.status, 400, `${what}: 400`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_INVALID_FIELD', `${what}: code`);
    t.equal(r.body?.error?.field, field, `${what}: field ${field} named`);
    t.match(r.body?.error?.message, field.split('.')[0]!, `${what}: message names the field`);
  }
  const notJson = await admin.request('POST', '/v1/deployments', '{"model": "m", ');
  t.equal(notJson.status, 400, 'malformed JSON: 400');
  t.equal(notJson.body?.error?.code, 'SLUICE_ERR_BAD_REQUEST');
  const array = await admin.request('POST', '/v1/deployments', '[]');
  t.equal(array.status, 400, 'a JSON array: 400');

  // The deployment service's endpoints validate their path segments the same way.
  const seed: Array<[string, string]> = [
    ['/deploy/..%2Fx/1', 'model_name'],
    ['/deploy/%24(touch%20x)/1', 'model_name'],
    ['/deploy/iris/1.2', 'version'],
    ['/deploy/iris/%24(x)', 'version'],
  ];
  for (const [path, field] of seed) {
    const r = await admin.post(path);
    t.equal(r.status, 400, `POST ${path}: 400`);
    t.equal(r.body?.error?.field, field, `POST ${path}: field ${field}`);
  }
  const versions = await admin.get('/get_model_version_list/..%2F..%2Fetc');
  t.equal(versions.status, 400, 'GET /get_model_version_list with a path trick: 400');
  t.equal(versions.body?.error?.field, 'model_name');

  for (const path of ['/v1/deployments/..%2F..%2Fetc%2Fpasswd', '/v1/deployments/nope-1', '/v1/deployments/nope-1/logs']) {
    const r = await admin.get(path);
    t.equal(r.status, 404, `GET ${path}: 404`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_NOT_FOUND');
  }
  t.equal((await admin.del('/v1/deployments/nope-1')).status, 404, 'DELETE of an unknown deployment: 404');
  t.equal((await admin.post('/undeploy/nope-1')).status, 404, 'POST /undeploy of an unknown deployment: 404');
  t.equal((await admin.request('PUT', '/v1/deployments')).status, 405, 'wrong method: 405');

  t.same(await admin.list(), [], 'no deployment was registered');
  const desired = join(JSON.parse(readFileSync(gw.configFile, 'utf8')).state_dir as string, 'desired.json');
  if (existsSync(desired)) t.same(JSON.parse(readFileSync(desired, 'utf8')).deployments, [], 'nothing persisted');
  else t.pass('no state file written');
});

t.test('registry endpoints without a registry, or with one that is down: clear errors, nothing deployed', async (t) => {
  const list = await admin.get('/get_model_list');
  t.equal(list.status, 503, 'no tracking URI configured: 503');
  t.equal(list.body?.error?.code, 'SLUICE_ERR_REGISTRY_NOT_CONFIGURED');
  const r = await admin.post('/v1/deployments', { model: 'iris', version: '1', runtime: 'mlflow' });
  t.equal(r.status, 400, 'an mlflow deployment without a tracking URI: 400');
  t.equal(r.body?.error?.field, 'mlflow.tracking_uri');
  t.same(await admin.list(), [], 'nothing registered');

  const dead = await freePort();
  const g = await startGateway({ ports: { from: 18514, to: 18515 }, mlflow: { tracking_uri: `http://127.0.0.1:${dead}` } }, { MLFLOW_TRACKING_URI: `http://127.0.0.1:${dead}` }, false);
  t.teardown(() => g.stop());
  const a = adminClient(g.adminUrl);
  const down = await a.get('/get_model_list');
  t.equal(down.status, 503, 'registry down: 503');
  t.equal(down.body?.error?.code, 'SLUICE_ERR_REGISTRY_UNAVAILABLE');
  const deploy = await a.post('/deploy/iris/1');
  t.equal(deploy.status, 503, 'deploy while the registry is down: 503');
  t.same(await a.list(), [], 'nothing registered');
  t.same(serversInRange(18514, 18515), [], 'nothing started');
  const ok = await a.post('/v1/deployments?wait=true', { model: 'after', version: '1', runtime: 'sim' });
  pids.note(ok.body);
  t.equal(ok.body?.replicas?.[0]?.port, 18514, 'no port was leaked by the failed attempts');
});

t.test('a command template is an argv: shell metacharacters reach the server literally', async (t) => {
  const marker = (n: number): string => join(dir, `injected-${n}`);
  const hostile = [
    `; touch ${marker(1)}`,
    `$(touch ${marker(2)})`,
    `\`touch ${marker(3)}\``,
    `&& touch ${marker(4)}`,
    `| touch ${marker(5)}`,
    `> ${marker(6)}`,
    `'"; touch ${marker(7)}; echo "'`,
    '$HOME {port}{model}',
  ];
  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'argv', version: '1', runtime: 'command', command: serverCommand(script, 'ok', ...hostile), readiness_path: '/ping',
    env: { INJECT: `$(touch ${marker(8)})` }, start_timeout_ms: 15_000,
  });
  pids.note(r.body);
  t.equal(r.status, 201, `deployed: ${r.text.slice(0, 300)}`);
  t.equal(r.body.state, 'ready');
  const port = r.body.replicas[0].port as number;
  const res = await gwRequest(`${gw.url}/argv-1/argv`);
  t.equal(res.status, 200, 'served through the gateway');
  const seen = res.json as { argv: string[] };
  t.same(seen.argv, [String(port), 'ok', ...hostile.slice(0, -1), `$HOME ${port}argv`], 'every element arrived as one literal argument; only {port} and {model} were substituted');
  t.equal((res.json as { env: string }).env, `$(touch ${marker(8)})`, 'an env value arrives literally too');
  for (let n = 1; n <= 8; n++) t.notOk(existsSync(marker(n)), `no file created by injected command ${n}`);
  const del = await admin.del('/v1/deployments/argv-1?grace_ms=0');
  t.equal(del.status, 200);
});

t.test('logs endpoint: stdout and stderr lines, tail, bounded buffer', async (t) => {
  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'noisy', version: '1', runtime: 'command', command: serverCommand(script, 'noisy'), readiness_path: '/ping', start_timeout_ms: 15_000,
  });
  pids.note(r.body);
  t.equal(r.status, 201, r.text.slice(0, 300));
  const pid = r.body.replicas[0].pid as number;

  const logs = await waitFor(async () => {
    const l = await admin.get('/v1/deployments/noisy-1/logs?tail=100000');
    return l.status === 200 && l.body.lines.some((x: { line: string }) => /^listening on/.test(x.line)) ? l : undefined;
  }, 10_000, 'the listening line in the logs');
  const lines = logs.body.lines as Array<{ stream: string; line: string; at: number }>;
  t.equal(logs.body.id, 'noisy-1');
  t.ok(lines.length <= 1000, `the buffer is bounded (${lines.length} lines kept of more than 3000 printed)`);
  t.ok(lines.length >= 900, 'and keeps the newest lines');
  t.notOk(lines.some((l) => l.line === 'noise line 1'), 'the oldest lines were dropped');
  t.ok(lines.some((l) => l.stream === 'stdout' && l.line === 'noise line 3000'), 'the newest stdout line is kept');
  t.ok(lines.every((l) => (l.stream === 'stdout' || l.stream === 'stderr') && typeof l.at === 'number'), 'each line has a stream and a time');

  const start = await admin.post('/v1/deployments?wait=true', {
    model: 'chatty', version: '1', runtime: 'command', command: serverCommand(script, 'ok'), readiness_path: '/ping', start_timeout_ms: 15_000,
  });
  pids.note(start.body);
  const chatty = await waitFor(async () => {
    const l = await admin.get('/v1/deployments/chatty-1/logs');
    return l.body?.lines?.length >= 3 ? l : undefined;
  }, 10_000, 'three log lines');
  const cl = chatty.body.lines as Array<{ stream: string; line: string }>;
  t.ok(cl.some((l) => l.stream === 'stdout' && l.line === `server ${start.body.replicas[0].pid} starting in mode ok`), 'stdout line captured');
  t.ok(cl.some((l) => l.stream === 'stderr' && l.line === `stderr hello from ${start.body.replicas[0].pid}`), 'stderr line captured, tagged stderr');
  const tail = await admin.get('/v1/deployments/chatty-1/logs?tail=1');
  t.equal(tail.body.lines.length, 1, '?tail=1 gives one line');
  t.same(tail.body.lines[0], cl[cl.length - 1], 'the newest one');
  t.equal((await admin.get('/v1/deployments/chatty-1/logs?tail=0')).status, 400, '?tail=0: 400');
  t.equal((await admin.get('/v1/deployments/chatty-1/logs?tail=abc')).body?.error?.field, 'tail');

  for (const id of ['noisy-1', 'chatty-1']) t.equal((await admin.del(`/v1/deployments/${id}?grace_ms=0`)).status, 200);
  t.notOk(pidAliveSafe(pid), 'noisy server stopped');
});

function pidAliveSafe(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z');
  } catch {
    return false;
  }
}

t.test('stopping the gateway stops every model server it started', async (t) => {
  const code = await gw.stop();
  t.equal(code, 0, 'the gateway exits 0 on SIGTERM', { signal: gw.child.signalCode, lines: gw.lines.slice(-10) });
  await assertNoServersLeft(t, pids.pids, RANGE);
});
