// A restart after a crash that cannot even start the server (its output files cannot be
// opened: descriptors short for a moment, the log directory gone) is one more crash, with
// the usual backoff: the replica comes back once the cause goes. It was given up at once,
// `failed` with "supervision failed", after a single crash.
//
// Replica ports 26830-26834 belong to this file; the gateway listens on port 0.

import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, PidLog, reapServers, sleep, waitFor, type DeploymentView } from '../helpers/control.js';

t.setTimeout(120_000);

const RANGE = { from: 26830, to: 26834 };
const pids = new PidLog();
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  await reapServers(pids.pids, RANGE);
});

t.test('a restart whose log files cannot be opened is retried, and the replica comes back', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  gw = await startGateway({ ports: RANGE, state_dir: stateDir, deployments: [{ model: 'rs', version: '1', runtime: 'sim' }] });
  const admin = adminClient(gw.adminUrl);
  const replica = async (): Promise<NonNullable<DeploymentView['replicas']>[number]> => {
    const r = await admin.get('/v1/deployments/rs-1');
    pids.note(r.body);
    return (r.body as DeploymentView).replicas[0]!;
  };
  const first = await replica();
  // The log directory becomes a file: the next server's output files cannot be opened.
  const logs = join(stateDir, 'logs');
  renameSync(logs, `${logs}.away`);
  writeFileSync(logs, '');
  process.kill(first.pid!, 'SIGKILL');
  await waitFor(async () => (await replica()).restarts >= 1, 10_000, 'a restart that could not start the server');
  await sleep(300);
  const meanwhile = await replica();
  t.equal(meanwhile.state, 'restarting', 'the replica waits for its next try, not failed');
  t.match(meanwhile.last_error, /could not be started/, 'and says why the last one did not start');
  rmSync(logs);
  renameSync(`${logs}.away`, logs);
  mkdirSync(logs, { recursive: true });
  const back = await waitFor(async () => {
    const r = await replica();
    return r.state === 'ready' ? r : undefined;
  }, 20_000, 'the replica ready again');
  t.not(back.pid, first.pid, 'on a new server');
  t.equal((await fetch(`${gw.url}/rs-1/api/tags`)).status, 200, 'which serves');
  await gw.stop();
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE);
});
