// The state store in Redis goes away: a deploy, an undeploy and a traffic change answer 503
// SLUICE_ERR_DEPENDENCY_UNAVAILABLE with Retry-After, and nothing changes here (no server
// starts, nothing stops, the weights stay); with Redis back, the same deploy goes through.

import { connect } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { adminClient, assertNoServersLeft, PidLog, reapServers, redisCommand, startRedis, waitFor, type AdminClient, type AdminReply, type RedisServer } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { modelView } from '../helpers/traffic.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 19211-19216 belong to this file: Redis 19211, the gateway 19212 (admin 19213),
// its replicas 19214-19216.
const REDIS_PORT = 19211;
const RANGE = { from: 19214, to: 19216 };
const pids = new PidLog();
let redis: RedisServer | undefined;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await redis?.stop();
  await reapServers(pids.pids, RANGE);
});

/** Whether something listens on loopback `port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const errorOf = (r: AdminReply): { code?: string; dependency?: string; use?: string } | undefined => (r.body as { error?: { code?: string } } | undefined)?.error;

function refused(t: Test, r: AdminReply, what: string): void {
  t.equal(r.status, 503, `${what}: 503 (${r.text.slice(0, 300)})`);
  t.match(errorOf(r), { code: 'SLUICE_ERR_DEPENDENCY_UNAVAILABLE', dependency: 'redis', use: 'state' }, `${what}: the dependency's error, naming Redis and its use`);
  t.equal(r.headers.get('retry-after'), '1', `${what}: with Retry-After`);
}

t.test('Redis away: deploy, undeploy and traffic answer 503 and change nothing; Redis back: the deploy goes through', async (t) => {
  redis = await startRedis(REDIS_PORT);
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19212 },
    admin: { host: '127.0.0.1', port: 19213 },
    ports: RANGE,
    state_dir: join(t.testdir(), 'state'),
    redis: { url: redis.url },
    log: { level: 'info', access: false },
    // The breaker stays closed: every write is tried, and fails as Redis does.
    dependencies: { redis: { state: { volume_threshold: 1_000_000 } } },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  });
  const admin: AdminClient = adminClient(gw.adminUrl);
  const deployed = await admin.post('/v1/deployments?wait=true', { model: 'demo', version: '2', runtime: 'sim' });
  t.equal(deployed.status, 201, deployed.text.slice(0, 300));
  t.equal((await admin.request('PUT', '/v1/models/demo/traffic', { weights: { '1': 50, '2': 50 } })).status, 200);
  const before = await admin.list();
  pids.note(before);
  const ports = new Set(before.flatMap((d) => d.replicas.map((r) => r.port)));

  await redis.stop();
  redis = undefined;

  refused(t, await admin.post('/v1/deployments', { model: 'demo', version: '3', runtime: 'sim' }), 'a deploy');
  await sleep(1_000);
  const after = await admin.list();
  pids.note(after);
  t.same(after.map((d) => d.id).sort(), ['demo-1', 'demo-2'], 'demo-3 is not registered');
  t.equal((await httpRequest(`${gw.url}/demo-3/_sim/echo`, { timeoutMs: 5_000 })).status, 404, 'nor routed');
  for (let port = RANGE.from; port <= RANGE.to; port++) {
    if (!ports.has(port)) t.notOk(await listening(port), `no server started on port ${port}`);
  }

  refused(t, await admin.del('/v1/deployments/demo-2?grace_ms=0'), 'an undeploy');
  t.equal((await httpRequest(`${gw.url}/demo-2/_sim/echo`, { timeoutMs: 5_000 })).status, 200, 'demo-2 still serves');

  refused(t, await admin.request('PUT', '/v1/models/demo/traffic', { weights: { '1': 100 } }), 'a traffic change');
  t.same((await modelView(admin, 'demo')).weights, { '1': 50, '2': 50 }, 'the weights stay as stored');

  // Back, empty (no persistence): the same deploy is stored and runs.
  redis = await startRedis(REDIS_PORT);
  const again = await waitFor(async () => {
    const r = await admin.post('/v1/deployments?wait=true', { model: 'demo', version: '3', runtime: 'sim' });
    return r.status === 503 ? undefined : r;
  }, 20_000, 'a deploy once Redis is back');
  t.equal(again.status, 201, `Redis back: the deploy is accepted, not a conflict (${again.text.slice(0, 200)})`);
  pids.note(again.body);
  t.equal(await redisCommand(REDIS_PORT, 'HEXISTS', 'sluice:deployments', 'demo-3'), 1, 'and stored');
  pids.note(await admin.list());

  t.equal(await gw.stop(), 0, 'the gateway exits 0');
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE);
});
