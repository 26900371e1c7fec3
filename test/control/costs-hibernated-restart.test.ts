// GET /v1/costs keeps hibernated time across restarts (README, Cost): all of it, not only
// the hibernation under way at the stop. A deployment that had slept and woken again lost
// those hours (and what they saved) at the next start: only the time of a hibernation still
// going on was read back.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, sleep, waitState, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 29320-29329 belong to this file.
const RANGE = { from: 29320, to: 29329 };
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-costs-hibernated-')), 'state');
const config = {
  ports: RANGE, state_dir: stateDir,
  deployments: [{ model: 'nap', version: '1', runtime: 'sim', cost: { per_replica_hour: 3.6 } }],
};
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

interface Cost { id: string; hibernated_hours: number; saved_by_hibernation_usd: number }
const costOf = async (admin: AdminClient): Promise<Cost> => ((await admin.get('/v1/costs')).body.deployments as Cost[]).find((c) => c.id === 'nap-1')!;

t.test('hibernated hours before the last wake survive a restart', async (t) => {
  gw = await startGateway(config);
  let admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments/nap-1/hibernate')).status, 200);
  await sleep(2_000);
  t.equal((await admin.post('/v1/deployments/nap-1/wake')).status, 200);
  await waitState(admin, 'nap-1', 'ready', 20_000);
  const before = await costOf(admin);
  t.ok(before.hibernated_hours * 3_600 >= 2, `about 2 s hibernated: ${before.hibernated_hours * 3_600} s`);
  await gw.stop();

  gw = await startGateway(config);
  admin = adminClient(gw.adminUrl);
  t.equal((await admin.deployment('nap-1'))?.state, 'ready', 'it runs, as it did at the stop');
  const after = await costOf(admin);
  t.equal(after.hibernated_hours, before.hibernated_hours, 'its hibernated hours are those it had');
  t.equal(after.saved_by_hibernation_usd, before.saved_by_hibernation_usd, 'and so is what they saved');

  // Hibernated again: the new hibernation counts on top of them.
  t.equal((await admin.post('/v1/deployments/nap-1/hibernate')).status, 200);
  await sleep(1_000);
  const asleep = await costOf(admin);
  t.ok(asleep.hibernated_hours > after.hibernated_hours + 0.9 / 3_600, 'and the next hibernation adds to them');
});
