// SIGUSR1 and SIGUSR2 mean nothing to sluice: logged, and the gateway serves on. Node's
// defaults opened its debugger on 127.0.0.1:9229 (USR1: any local user could then run code
// in the gateway) and ended the process on the spot (USR2: no drain, servers left running).
//
// Replica ports 26835-26839 belong to this file; the gateway listens on port 0.

import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, PidLog, reapServers, sleep, waitFor } from '../helpers/control.js';

t.setTimeout(120_000);

const RANGE = { from: 26835, to: 26839 };
const pids = new PidLog();
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  await reapServers(pids.pids, RANGE);
});

t.test('SIGUSR1 and SIGUSR2: logged and ignored; no debugger, no exit', async (t) => {
  gw = await startGateway({ ports: RANGE, deployments: [{ model: 'usr', version: '1', runtime: 'sim' }] });
  pids.note((await adminClient(gw.adminUrl).get('/v1/deployments/usr-1')).body);
  const g = gw;
  for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) {
    g.child.kill(signal);
    await waitFor(() => g.lines.some((l) => l.includes('signal ignored') && l.includes(signal)), 5_000, `the ${signal} log line`);
  }
  await sleep(300);
  t.equal(g.child.exitCode, null, 'still running');
  t.equal(g.child.signalCode, null, 'not killed by a signal');
  t.notOk(g.lines.some((l) => l.includes('Debugger listening')), 'no debugger was opened');
  t.equal((await fetch(`${g.url}/usr-1/api/tags`)).status, 200, 'still serving');
  t.equal(await g.stop(), 0, 'SIGTERM: exit 0');
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE, 2_000);
});
