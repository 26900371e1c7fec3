// Two instances on one host sharing a Redis run one set of servers for a deployment that may
// hibernate. When the owner's server failed to start (a model raising at load), it published
// the failed server as merely not ready: the other instance showed the deployment `starting`
// for good and held each of its requests for policies.hold.max_wait_ms (120 s), then 503
// SLUICE_ERR_NOT_READY_TIMEOUT. A failed server is now published as failed, with why: the
// other instance shows the deployment failed and refuses its requests at once, naming it.

import { join } from 'node:path';
import t from 'tap';
import { adminClient, gwRequest, reapServers, startRedis, waitFor, type RedisServer } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 28360-28379 belong to this file: 28360 Redis, 28361-28364 the two gateways and their
// admin APIs, 28365-28374 the model-server ports (both instances allocate from them).
const RANGE = { from: 28365, to: 28374 };
const dir = t.testdir();
let redis: RedisServer | undefined;
const gateways: Gateway[] = [];

t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await reapServers([], RANGE);
  await redis?.stop();
});

async function start(name: string, port: number): Promise<Gateway> {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port }, admin: { host: '127.0.0.1', port: port + 1 }, ports: RANGE,
    state_dir: join(dir, `state-${name}`), redis: { url: redis!.url },
  });
  gateways.push(gw);
  return gw;
}

t.test('a server the owner could not start is failed on the other instance too', async (t) => {
  redis = await startRedis(28360);
  const a = await start('a', 28361);
  const b = await start('b', 28363);
  const [adminA, adminB] = [adminClient(a.adminUrl), adminClient(b.adminUrl)];
  const spec = {
    model: 'broken', version: '1', runtime: 'command', command: ['python3', '-c', 'raise RuntimeError("boom at load")', '{port}'], readiness_path: '/',
    scale: { min_replicas: 0, idle_timeout_s: 600 },
  };
  t.equal((await adminA.post('/v1/deployments?wait=true', spec)).status, 502, 'it fails on the instance that runs it');
  const seen = await waitFor(async () => {
    const v = await adminB.deployment('broken-1') as { state: string; shared: { role: string } | null; last_error: string | null } | null;
    return v?.shared?.role === 'borrower' && v.state === 'failed' ? v : undefined;
  }, 20_000, 'the other instance to show it failed');
  t.match(seen.last_error, /^replica broken-1\/0 exited with code 1 before becoming ready \(on instance .+, which runs its servers\)$/, 'with why');

  const started = Date.now();
  const refused = await gwRequest(`${b.url}/broken-1/invocations`, { method: 'POST', body: { inputs: [[1]] }, timeoutMs: 10_000 });
  t.equal(refused.status, 503, refused.text);
  t.equal(refused.json?.error?.message, 'broken-1 failed: replica broken-1/0 exited with code 1 before becoming ready', 'refused at once, naming it');
  t.ok(Date.now() - started < 2_000, 'not held');
});
