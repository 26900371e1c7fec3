// Two instances on one host share a hibernating deployment's servers through Redis: one
// holds the lease and runs them, the other routes to them. When Redis is out of reach for
// longer than the lease (or comes back without its data), the borrower finds no record,
// goes back to sleep, and its next request takes the free lease and starts servers of its
// own. The instance that ran them before used to stay an owner with its servers for good
// (two sets on the host, invisible to each other); it now stops them and borrows the
// other's. The outage is played by writing to Redis what it leaves behind: the lease in
// the borrower's name and no record of the old owner's servers.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, gwRequest, reapServers, redisCommand, serversInRange, startRedis, waitFor, waitState, type AdminClient, type DeploymentView, type RedisServer } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 25410-25429 belong to this file: Redis 25410, gateways and admin ports 25411-25414,
// the replicas 25420-25429 (both instances allocate from them, as instances of one host do).
const RANGE = { from: 25420, to: 25429 };
const dir = t.testdir();
let redis: RedisServer;
const gateways: Gateway[] = [];

interface Instance {
  readonly name: string;
  readonly gw: Gateway;
  readonly admin: AdminClient;
  readonly stateDir: string;
}

interface SharedView extends DeploymentView {
  shared: { role: 'owner' | 'borrower'; owner: string | null } | null;
}

async function start(name: string, port: number): Promise<Instance> {
  const stateDir = join(dir, `state-${name}`);
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port }, admin: { host: '127.0.0.1', port: port + 1 },
    ports: RANGE, state_dir: stateDir, redis: { url: redis.url }, shutdown: { drain_delay_ms: 0, grace_ms: 2_000 },
    deployments: [{ model: 'hb', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'], scale: { min_replicas: 0, idle_timeout_s: 600 } }],
  }, {}, false);
  gateways.push(gw);
  return { name, gw, admin: adminClient(gw.adminUrl), stateDir };
}

t.before(async () => {
  redis = await startRedis(25410);
});
t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await reapServers([], RANGE);
  await redis?.stop();
});

const view = async (i: Instance): Promise<SharedView> => (await i.admin.deployment('hb-1')) as SharedView;
const servers = (): number[] => serversInRange(RANGE.from, RANGE.to).map((p) => p.pid).sort();
const generate = (i: Instance) => gwRequest(`${i.gw.url}/hb-1/api/generate`, { body: { model: 'hb', prompt: 'hi', stream: false } });

t.test('an owner that lost the lease to another instance stops its servers and borrows the other\'s', async (t) => {
  const a = await start('a', 25411);
  await waitState(a.admin, 'hb-1', 'ready', 30_000);
  const b = await start('b', 25413);
  await waitState(b.admin, 'hb-1', 'ready', 30_000);
  t.equal((await view(a)).shared?.role, 'owner', 'a runs the servers');
  t.equal((await view(b)).shared?.role, 'borrower', 'b routes to them');
  const before = servers();
  t.equal(before.length, 1, 'one server on the host');

  // What an outage longer than the lease leaves: b's lease, and no record of a's servers.
  const bId = readFileSync(join(b.stateDir, 'instance-id'), 'utf8').split('\n')[0]!;
  await redisCommand(redis.port, 'SET', `sluice:lease:servers:${hostname()}:hb-1`, bId, 'PX', '15000');
  await redisCommand(redis.port, 'DEL', `sluice:shared-servers:${hostname()}:hb-1`);
  await waitState(b.admin, 'hb-1', 'hibernated', 10_000);
  t.equal((await generate(b)).status, 200, 'b\'s next request wakes it');
  t.equal((await view(b)).shared?.role, 'owner', 'b runs servers of its own now');

  // a fails its next renewal (every 5 s) and steps down.
  const one = await waitFor(() => {
    const now = servers();
    return now.length === 1 && !now.includes(before[0]!) ? now : undefined;
  }, 20_000, 'a to stop its server, leaving b\'s alone');
  t.equal(one.length, 1, 'one server on the host again');
  const r = await generate(a);
  t.equal(r.status, 200, 'a serves its requests');
  const va = await view(a);
  t.equal(va.shared?.role, 'borrower', 'through b\'s server');
  t.equal(va.replicas[0]?.pid ?? null, null, 'with no process of its own');
});
