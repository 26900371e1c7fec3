// A second instance of a host set up from a copy of the first one's state dir (a backup
// restored beside it, `cp -r` of a seeded directory) shares the first one's Redis: it must
// be another instance, not the same one twice. Both used to read the same
// state_dir/instance-id, so each took the other's lease of a deployment that may hibernate
// as its own, and both ran servers for it, where README promises one set for all.

import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, serversInRange, startRedis, waitState, type AdminClient, type DeploymentView, type RedisServer } from '../helpers/control.js';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 29310-29319 belong to this file (both instances allocate from them, as
// instances of one host do).
const RANGE = { from: 29310, to: 29319 };
const dir = t.testdir();
let redis: RedisServer;
const gateways: Gateway[] = [];

interface SharedView extends DeploymentView {
  shared: { role: 'owner' | 'borrower'; owner: string | null } | null;
}

async function start(stateDir: string): Promise<{ gw: Gateway; admin: AdminClient }> {
  const gw = await startGateway({
    ports: RANGE, state_dir: stateDir, redis: { url: redis.url },
    deployments: [{ model: 'nap', version: '1', runtime: 'sim', scale: { min_replicas: 0, idle_timeout_s: 60 } }],
  }, {}, false);
  gateways.push(gw);
  return { gw, admin: adminClient(gw.adminUrl) };
}

t.before(async () => {
  redis = await startRedis();
});
t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await reapServers([], RANGE);
  await redis?.stop();
});

t.test('an instance started from a copy of another\'s state dir borrows its servers, and runs none of its own', async (t) => {
  const first = join(dir, 'state-a');
  const copy = join(dir, 'state-b');
  // The first instance's state dir, as a run and a clean stop leave it.
  const seed = await start(first);
  await waitState(seed.admin, 'nap-1', 'ready', 30_000);
  await seed.gw.stop();
  gateways.length = 0;
  cpSync(first, copy, { recursive: true });

  const a = await start(first);
  await waitState(a.admin, 'nap-1', 'ready', 30_000);
  const b = await start(copy);
  await waitState(b.admin, 'nap-1', 'ready', 30_000);
  const [va, vb] = [await a.admin.deployment('nap-1') as SharedView, await b.admin.deployment('nap-1') as SharedView];
  t.equal(va.shared?.role, 'owner', 'the first instance runs the server');
  t.equal(vb.shared?.role, 'borrower', 'the copy routes to it');
  t.equal(vb.replicas[0]?.port, va.replicas[0]?.port, 'on its port');
  t.equal(new Set(serversInRange(RANGE.from, RANGE.to).map((p) => p.pgid)).size, 1, 'one server on the host');
  const idOf = (stateDir: string): string => readFileSync(join(stateDir, 'instance-id'), 'utf8').split('\n')[0]!;
  t.not(idOf(copy), idOf(first), 'the copy has an id of its own');
  t.ok(jsonLogs(b.gw).some((l) => String(l.msg).includes('instance-id was made in another directory')), 'and says why');
  t.notOk(jsonLogs(a.gw).some((l) => String(l.msg).includes('instance-id was made in another directory')), 'the first one keeps its id');
});
