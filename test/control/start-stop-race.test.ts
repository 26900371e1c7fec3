// A deployment's replicas start one after another. An undeploy or a hibernation that comes
// while they do must stop all of them: the one whose start is under way and those that
// would have started after it. Before, the start went on replica after replica, and those
// it started after the stop ran on untracked, holding their ports, past the gateway's stop.

import t from 'tap';
import { adminClient, assertNoServersLeft, reapServers, waitFor, waitState, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 24100-24119 belong to this file.
const RANGE = { from: 24100, to: 24119 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

const spec = (model: string, replicas: number): Record<string, unknown> => ({
  model, version: '1', runtime: 'sim', replicas, args: ['--ttft-ms', '0', '--token-ms', '0'], start_timeout_ms: 20_000,
});

/** Polls (every 5 ms: the replicas start within tens of ms) until `id` has a replica. */
async function firstReplica(admin: AdminClient, id: string): Promise<void> {
  await waitFor(async () => ((await admin.deployment(id))?.replicas.length ?? 0) > 0, 20_000, `${id} to start a replica`, 5);
}

t.test('undeployed while its replicas start: none of them runs on', async (t) => {
  gw = await startGateway({ ports: RANGE }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const deploying = admin.post('/v1/deployments', spec('race', 8));
  await firstReplica(admin, 'race-1');
  t.equal((await admin.del('/v1/deployments/race-1?grace_ms=0')).status, 200, 'undeployed');
  await deploying;
  t.equal(await admin.deployment('race-1'), null, 'gone');
  await assertNoServersLeft(t, [], RANGE);
});

t.test('hibernated while a wake starts its replicas: asleep with no server running', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  t.equal((await admin.post('/v1/deployments?wait=true', spec('hw', 8))).status, 201);
  await waitFor(async () => (await admin.deployment('hw-1'))?.replicas.every((r) => r.state === 'ready'), 30_000, 'hw-1 ready');
  t.equal((await admin.post('/v1/deployments/hw-1/hibernate?grace_ms=0')).status, 200);
  await assertNoServersLeft(t, [], RANGE);
  const waking = admin.post('/v1/deployments/hw-1/wake');
  await firstReplica(admin, 'hw-1');
  t.equal((await admin.post('/v1/deployments/hw-1/hibernate?grace_ms=0')).status, 200, 'hibernated again');
  await waking;
  const view = await waitState(admin, 'hw-1', 'hibernated');
  t.same(view.replicas, [], 'no replica');
  await assertNoServersLeft(t, [], RANGE);
  // And it wakes whole again.
  t.equal((await admin.post('/v1/deployments/hw-1/wake')).status, 200);
  await waitFor(async () => {
    const d = await admin.deployment('hw-1');
    return d !== null && d.replicas.length === 8 && d.replicas.every((r) => r.state === 'ready');
  }, 30_000, 'hw-1 awake with its 8 replicas');
  t.equal((await admin.del('/v1/deployments/hw-1?grace_ms=0')).status, 200);
  await assertNoServersLeft(t, [], RANGE);
});
