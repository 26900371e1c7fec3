// Autoscaling shared servers: two instances on one host share a redis-server and the
// servers of a deployment that may hibernate. Load that reaches only the instance that
// routes to the other's servers still scales them up (it reports its load), it follows
// the new replicas, no request fails, and the servers shrink back once the load stops.
// While Redis hangs, the borrower keeps routing to the servers it last saw, and says so
// once.

import { join } from 'node:path';
import t from 'tap';
import { adminClient, gwRequest, reapServers, serversInRange, startRedis, waitFor, type AdminClient, type RedisServer } from '../helpers/control.js';
import { eventually, jsonLogs, sleep, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 19130-19139 belong to this file (both instances allocate from them).
const RANGE = { from: 19130, to: 19139 };
const dir = t.testdir();
let redis: RedisServer;
const gateways: Gateway[] = [];

interface Instance {
  readonly gw: Gateway;
  readonly admin: AdminClient;
}

async function start(name: string): Promise<Instance> {
  const gw = await startGateway({
    ports: RANGE, state_dir: join(dir, `state-${name}`), redis: { url: redis.url }, log: { level: 'info', access: false },
    deployments: [{
      model: 'grow', version: '1', runtime: 'sim', replicas: 1, args: ['--ttft-ms', '300', '--tokens', '1'],
      scale: { min_replicas: 0, idle_timeout_s: 600, max_replicas: 3, target_inflight_per_replica: 2, scale_up_window_s: 2, scale_down_window_s: 3 },
      policies: { cache: { enabled: false } },
    }],
  }, {}, false);
  gateways.push(gw);
  return { gw, admin: adminClient(gw.adminUrl) };
}

t.before(async () => {
  redis = await startRedis();
});
let redisStopped = false;
t.teardown(async () => {
  if (redisStopped) process.kill(redis.pid, 'SIGCONT');
  await Promise.all(gateways.map((g) => g.stop()));
  await reapServers([], RANGE);
  await redis?.stop();
});

const servers = (): number => new Set(serversInRange(RANGE.from, RANGE.to).map((p) => p.pgid)).size;
const readyReplicas = async (i: Instance): Promise<number> => (await i.admin.deployment('grow-1'))!.replicas.filter((r) => r.state === 'ready').length;

t.test('load through the borrower alone scales the owner\'s servers up, and back down when it stops', async (t) => {
  const a = await start('a');
  await waitFor(async () => ((await readyReplicas(a)) === 1 ? true : undefined), 30_000, 'a to run grow-1');
  const b = await start('b');
  await waitFor(async () => ((await readyReplicas(b)) === 1 ? true : undefined), 30_000, 'b to route to a\'s server');
  t.equal(((await b.admin.deployment('grow-1')) as unknown as { shared: { role: string } }).shared.role, 'borrower', 'b routes to a\'s server');
  t.equal(servers(), 1, 'one server for both');

  let running = true;
  const statuses: number[] = [];
  const loops = Array.from({ length: 12 }, async () => {
    while (running) {
      const r = await gwRequest(`${b.gw.url}/grow-1/api/generate`, { method: 'POST', body: { model: 'demo', prompt: 'hi', stream: false }, timeoutMs: 30_000 });
      statuses.push(r.status);
    }
  });
  try {
    await waitFor(async () => ((await readyReplicas(a)) >= 2 ? true : undefined), 30_000, 'a to scale up on b\'s load');
    await waitFor(async () => ((await readyReplicas(b)) >= 2 ? true : undefined), 10_000, 'b to follow the new replicas');
    t.pass(`a runs ${await readyReplicas(a)} replicas for b's load, and b routes to them`);
    t.ok(servers() >= 2, `${servers()} servers: started once, by a`);
  } finally {
    running = false;
    await Promise.all(loops);
  }
  t.ok(statuses.length > 30, `${statuses.length} requests through b`);
  t.same(statuses.filter((s) => s !== 200), [], 'none failed');
  const events = (await a.admin.get('/v1/deployments/grow-1/events')).body.events as Array<{ action: string }>;
  t.ok(events.some((e) => e.action === 'scale_up'), 'the scale-up is an event of a');

  // The replica leaves the views when its server is told to stop; the process exits after
  // its drain, so the count of processes is waited for too.
  await waitFor(async () => ((await readyReplicas(a)) === 1 && (await b.admin.deployment('grow-1'))!.replicas.length === 1 && servers() === 1 ? true : undefined), 30_000, 'both back to one replica, one server process');
  t.equal(servers(), 1, 'the load over, one server again');

  // Redis hangs: b keeps routing to a's server and says so once, not every second.
  process.kill(redis.pid, 'SIGSTOP');
  redisStopped = true;
  const during: number[] = [];
  const until = Date.now() + 4_000;
  while (Date.now() < until) {
    during.push((await gwRequest(`${b.gw.url}/grow-1/api/generate`, { method: 'POST', body: { model: 'demo', prompt: 'hi', stream: false }, timeoutMs: 10_000 })).status);
    await sleep(200);
  }
  process.kill(redis.pid, 'SIGCONT');
  redisStopped = false;
  t.same(during.filter((s) => s !== 200), [], `Redis hung: all ${during.length} requests through b answered`);
  const said = await eventually(() => {
    const lines = jsonLogs(b.gw).filter((l) => typeof l.msg === 'string' && /shared state/.test(l.msg)).map((l) => String(l.msg));
    return lines.some((m) => /answers again/.test(m)) ? lines : undefined;
  }, 15_000, 'b to say the shared state answers again');
  t.equal(said.filter((m) => /cannot reach/.test(m)).length, 1, 'the outage is logged once');
});
