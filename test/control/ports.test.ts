// The port allocator seen through the admin API: ports come from the configured range,
// a port somebody else listens on is skipped, no port is handed out twice (concurrent
// deploys included), an exhausted range is a 503 JSON error with nothing half-registered,
// and undeploying returns the port to the pool.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import {
  adminClient, assertNoServersLeft, canBind, gwRequest, occupy, PidLog, reapServers, serversInRange, type AdminClient,
} from '../helpers/control.js';

t.setTimeout(90_000);

// Replica ports 18520-18522 belong to this file; 18520 is held by the test itself.
const RANGE = { from: 18520, to: 18522 };
const pids = new PidLog();

let gw: Gateway;
let admin: AdminClient;
let squatter: { close(): Promise<void> } | undefined;
let stateFile: string;

t.before(async () => {
  squatter = await occupy(18520);
  gw = await startGateway({ ports: RANGE }, {}, false);
  admin = adminClient(gw.adminUrl);
  stateFile = join(JSON.parse(readFileSync(gw.configFile, 'utf8')).state_dir as string, 'desired.json');
});

t.teardown(async () => {
  await gw?.stop();
  await squatter?.close();
  await reapServers(pids.pids, RANGE);
});

const sim = (model: string): Record<string, unknown> => ({ model, version: '1', runtime: 'sim' });
const persisted = (): string[] => (JSON.parse(readFileSync(stateFile, 'utf8')).deployments as Array<{ spec: { model: string; version: string } }>).map((d) => `${d.spec.model}-${d.spec.version}`).sort();

t.test('ports come from the range, skip a bound port, and are never handed out twice', async (t) => {
  // Two deploys at once: the allocator must not give both the same port.
  const [a, b] = await Promise.all([admin.post('/v1/deployments?wait=true', sim('a')), admin.post('/v1/deployments?wait=true', sim('b'))]);
  pids.note([a.body, b.body]);
  t.equal(a.status, 201, a.text.slice(0, 200));
  t.equal(b.status, 201, b.text.slice(0, 200));
  const ports = [a.body.replicas[0].port, b.body.replicas[0].port].sort();
  t.same(ports, [18521, 18522], 'the two free ports of the range, 18520 (bound by someone else) skipped');
  for (const id of ['a-1', 'b-1']) t.equal((await gwRequest(`${gw.url}/${id}/_sim/stats`)).status, 200, `${id} serves on its own port`);
});

t.test('an exhausted range: 503 JSON, nothing half-registered', async (t) => {
  const before = await admin.list();
  const r = await admin.post('/v1/deployments', sim('c'));
  t.equal(r.status, 503, 'deploy answers 503');
  t.match(r.headers.get('content-type') ?? '', /^application\/json/);
  t.equal(r.body?.error?.code, 'SLUICE_ERR_NO_FREE_PORT');
  t.match(r.body?.error?.message, /no free port left/);
  t.ok(typeof r.body?.error?.request_id === 'string', 'the error carries a request id');
  const waited = await admin.post('/v1/deployments?wait=true', sim('c'));
  t.equal(waited.status, 503, 'also with ?wait=true');

  t.same(await admin.list(), before, 'the deployment list is unchanged');
  t.equal((await admin.get('/v1/deployments/c-1')).status, 404, 'no such deployment');
  t.equal((await admin.get('/get_deployed_models')).body.deployed_models.length, 2);
  t.same(persisted(), ['a-1', 'b-1'], 'the desired state does not hold it');
  t.equal((await gwRequest(`${gw.url}/c-1/_sim/stats`)).status, 404, 'no route for it');
  t.equal(serversInRange(RANGE.from, RANGE.to).length, 2, 'no process was started for it');
  t.equal((await admin.get('/healthz')).status, 200, 'the gateway is still up');
});

t.test('undeploy releases the port; the next deploy gets it', async (t) => {
  const a = await admin.deployment('a-1');
  const port = a!.replicas[0]!.port;
  t.equal(await canBind(port), false, 'the port is in use while deployed');
  t.equal((await admin.del('/v1/deployments/a-1?grace_ms=0')).status, 200);
  t.equal(await canBind(port), true, 'the port is free once undeploy returned');
  const c = await admin.post('/v1/deployments?wait=true', sim('c'));
  pids.note(c.body);
  t.equal(c.status, 201, c.text.slice(0, 200));
  t.equal(c.body.replicas[0].port, port, 'the released port is handed out again');
  t.same(persisted(), ['b-1', 'c-1']);
});

t.test('a deployment whose second replica finds no port is rolled back whole', async (t) => {
  t.equal((await admin.del('/v1/deployments/c-1?grace_ms=0')).status, 200);
  const free = await admin.deployment('b-1').then((b) => [18521, 18522].find((p) => p !== b!.replicas[0]!.port)!);
  const before = await admin.list();
  const running = serversInRange(RANGE.from, RANGE.to).length;
  const r = await admin.post('/v1/deployments', { ...sim('pair'), replicas: 2 });
  t.equal(r.status, 503, 'two replicas, one free port: 503');
  t.equal(r.body?.error?.code, 'SLUICE_ERR_NO_FREE_PORT');
  t.same(await admin.list(), before, 'nothing half-registered');
  t.equal(serversInRange(RANGE.from, RANGE.to).length, running, 'the first replica\'s process was stopped');
  t.equal(await canBind(free), true, `and port ${free} released`);
  t.same(persisted(), ['b-1']);
  const one = await admin.post('/v1/deployments?wait=true', sim('single'));
  pids.note(one.body);
  t.equal(one.status, 201, 'the port can be used at once');
  t.equal(one.body.replicas[0].port, free);
});

t.test('stopping the gateway stops every model server it started', async (t) => {
  t.equal(await gw.stop(), 0, 'the gateway exits 0 on SIGTERM');
  await assertNoServersLeft(t, pids.pids, RANGE);
});
