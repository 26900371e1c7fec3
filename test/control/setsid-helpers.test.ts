// A model server may start a helper in a session of its own (`setsid`, Python's
// `start_new_session=True`): it leaves the server's process group, which is what a stop
// signals, so it outlived the undeploy, the gateway's stop, and a server stopped for a
// restart, holding memory (a GPU, a port) for good. A stop now finds the server's
// descendants outside its group, while their parents still link them to it, and stops
// them with the group.

import t, { type Test } from 'tap';
import { assertNoServersLeft, commandFixture, gwRequest, pidAlive, waitFor, waitState } from '../helpers/control.js';

t.setTimeout(120_000);

// Replica ports 19470-19479 belong to this file.
const RANGE = { from: 19470, to: 19479 };
const fx = commandFixture(t, RANGE, 20_000);
const helpers: number[] = [];

t.teardown(() => {
  for (const pid of helpers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
});

/** Deploys a stand-in server that starts a setsid helper; its replica's pid and the helper's. */
async function deployWithHelper(t: Test, model: string): Promise<{ pid: number; helper: number }> {
  const r = await fx.admin.post('/v1/deployments?wait=true', fx.command(model, 'setsid'));
  fx.pids.note(r.body);
  t.equal(r.status, 201, `deployed ${model}-1`);
  await waitState(fx.admin, `${model}-1`, 'ready', 20_000);
  const argv = await gwRequest(`${fx.gw.url}/${model}-1/argv`);
  const { pid, helper } = JSON.parse(argv.text) as { pid: number; helper: number };
  helpers.push(helper);
  return { pid, helper };
}

t.test('undeploy stops a helper the server started in a session of its own', async (t) => {
  const { pid, helper } = await deployWithHelper(t, 'und');
  t.ok(pidAlive(helper), 'the helper runs beside the server');
  t.equal((await fx.admin.del('/v1/deployments/und-1?grace_ms=0')).status, 200);
  await waitFor(() => (!pidAlive(pid) ? true : undefined), 15_000, 'the server to stop');
  await waitFor(() => (!pidAlive(helper) ? true : undefined), 15_000, 'the helper to stop').catch(() => undefined);
  t.notOk(pidAlive(helper), 'the helper is gone with the server');
});

t.test("the gateway's stop takes the helpers too", async (t) => {
  const { pid, helper } = await deployWithHelper(t, 'stp');
  t.ok(pidAlive(helper));
  await fx.gw.stop();
  t.notOk(pidAlive(pid), 'the server is gone');
  await waitFor(() => (!pidAlive(helper) ? true : undefined), 5_000, 'the helper to stop').catch(() => undefined);
  t.notOk(pidAlive(helper), 'and its helper');
  await assertNoServersLeft(t, fx.pids.pids, RANGE);
});
