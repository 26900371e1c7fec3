// SIGHUP without TLS: nothing to reload, and the gateway runs on. Node's default would end
// the process on the spot (no drain, buffered access lines lost, model servers orphaned):
// what a closed terminal or a reload sent by habit would do to a daemon.

import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, PidLog, reapServers, sleep, waitFor } from '../helpers/control.js';

t.setTimeout(180_000);

// Replica ports 19244-19247 belong to this file.
const RANGE = { from: 19244, to: 19247 };
const pids = new PidLog();
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('SIGHUP without TLS: logged, the gateway serves on, and a later SIGTERM still stops it cleanly', async (t) => {
  gw = await startGateway({ ports: RANGE }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const r = await admin.post('/v1/deployments?wait=true', { model: 'hup', version: '1', runtime: 'sim' });
  pids.note(r.body);
  t.equal(r.status, 201);
  for (let i = 0; i < 5; i++) t.equal((await fetch(`${gw.url}/hup-1/_sim/stats?n=${i}`)).status, 200);
  gw.child.kill('SIGHUP');
  const g = gw;
  await waitFor(() => g.lines.some((l) => l.includes('nothing to reload')), 5_000, 'the SIGHUP log line');
  await sleep(300);
  t.equal(gw.child.exitCode, null, 'still running');
  t.equal(gw.child.signalCode, null, 'not killed by the signal');
  t.equal((await fetch(`${gw.url}/hup-1/_sim/stats?n=after`)).status, 200, 'still serving');
  t.equal(await gw.stop(), 0, 'SIGTERM: exit 0');
  const accessLines = gw.lines.filter((l) => l.includes('"path":"/hup-1/_sim/stats"'));
  t.equal(accessLines.length, 6, 'every access line written', { accessLines });
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE, 2_000);
});
