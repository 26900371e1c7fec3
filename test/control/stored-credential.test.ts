// A deployment whose `auth.env` names a variable is refused where that variable is unset
// (admin API, config file). One read from the desired state (a restart without the
// variable, or another instance on the same Redis) used to run all the same, ready, and
// send every request and health check upstream without its credential. It is now listed
// as failed, naming auth.env, its requests get 503, and nothing reaches the server.

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import t from 'tap';
import { adminClient, startRedis } from '../helpers/control.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 24310-24319 belong to this file: 24310 the gateway, 24311 its admin API, 24312 the
// remote server, 24313-24319 model-server ports (unused); with Redis (on 24320), the second
// instance on 24321 (its admin API on 24322).
const config = { listen: { host: '127.0.0.1', port: 24310 }, admin: { host: '127.0.0.1', port: 24311 }, ports: { from: 24313, to: 24319 } };
const REMOTE_PORT = 24312;
const KEY_VAR = 'SLUICE_TEST_STORED_KEY';
const SECRET = 'sk-stored-credential-secret';

t.test('a stored deployment whose credential variable is unset here is failed, never routed without it', async (t) => {
  let gw: Gateway | undefined;
  t.teardown(async () => {
    await gw?.stop();
  });
  const seen: Array<{ path: string; authorization: string | undefined }> = [];
  const remote: Server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => remote.listen(REMOTE_PORT, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => remote.close(() => resolve())));

  gw = await startGateway(config, { [KEY_VAR]: SECRET });
  const first = gw;
  const admin = adminClient(first.adminUrl);
  const spec = { model: 'prov', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${REMOTE_PORT}`], auth: { env: KEY_VAR }, health_check: { path: '/health', interval_ms: 200 } };
  t.equal((await admin.post('/v1/deployments?wait=true', spec)).status, 201);
  t.equal((await fetch(`${first.url}/prov-1/v1/models`)).status, 200);
  t.ok(seen.length > 0 && seen.every((r) => r.authorization === `Bearer ${SECRET}`), 'with the variable: every request and check carries the key');
  await first.stop();
  gw = undefined;

  // The same state dir, the variable unset.
  const stateDir = (JSON.parse(readFileSync(first.configFile, 'utf8')) as { state_dir: string }).state_dir;
  seen.length = 0;
  gw = await startGateway({ ...config, state_dir: stateDir });
  const again = adminClient(gw.adminUrl);
  const view = await again.deployment('prov-1');
  t.equal(view?.state, 'failed', 'listed, failed');
  t.match(view?.last_error, new RegExp(`auth\\.env: the environment variable ${KEY_VAR} is not set`), 'naming the variable');
  const refused = await fetch(`${gw.url}/prov-1/v1/models`);
  t.equal(refused.status, 503, 'its requests are refused');
  await new Promise((r) => setTimeout(r, 600));
  t.same(seen.filter((r) => r.authorization === undefined), [], 'no request and no health check went out without the key');
  t.equal((await again.del('/v1/deployments/prov-1')).status, 200, 'and it can be undeployed');
});

t.test('one that another instance on the same Redis stored is failed here too, naming auth.env', async (t) => {
  const seen: Array<string | undefined> = [];
  const remote: Server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => remote.listen(REMOTE_PORT, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => remote.close(() => resolve())));
  const redis = await startRedis(24320);
  t.teardown(() => redis.stop());
  const shared = { redis: { url: redis.url }, log: { level: 'info', access: false } };
  const a = await startGateway({ ...config, ...shared }, { [KEY_VAR]: SECRET });
  t.teardown(() => a.stop());
  const b = await startGateway({ ...shared, listen: { host: '127.0.0.1', port: 24321 }, admin: { host: '127.0.0.1', port: 24322 }, ports: config.ports });
  t.teardown(() => b.stop());
  const spec = { model: 'prov', version: '2', runtime: 'remote', urls: [`http://127.0.0.1:${REMOTE_PORT}`], auth: { env: KEY_VAR }, health_check: { path: '/health', interval_ms: 200 } };
  t.equal((await adminClient(a.adminUrl).post('/v1/deployments?wait=true', spec)).status, 201);
  const onB = adminClient(b.adminUrl);
  await eventually(async () => ((await onB.deployment('prov-2'))?.state === 'failed' ? true : undefined), 10_000, 'B lists it failed');
  t.match((await onB.deployment('prov-2'))?.last_error, /auth\.env: the environment variable SLUICE_TEST_STORED_KEY is not set/);
  t.equal((await fetch(`${b.url}/prov-2/v1/models`)).status, 503, 'B refuses its requests');
  t.equal((await fetch(`${a.url}/prov-2/v1/models`)).status, 200, 'A serves them, with the key');
  t.same(seen.filter((h) => h !== `Bearer ${SECRET}`), [], 'nothing reached the server without the key');
  t.equal((await adminClient(a.adminUrl).del('/v1/deployments/prov-2')).status, 200);
  await eventually(async () => ((await onB.deployment('prov-2')) === null ? true : undefined), 10_000, 'undeployed through A, gone from B');
});
