// A model server's pid is recorded (replicas.json) on every spawn and state change, from an
// event, with nobody awaiting the write. A write that fails (a full disk, a read-only state
// volume) is logged; before, its rejection went unhandled and ended the gateway the moment
// a server crashed and was restarted, leaving the restarted server running as an orphan.

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, waitFor } from '../helpers/control.js';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 24130-24139 belong to this file.
const RANGE = { from: 24130, to: 24139 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  await reapServers([], RANGE);
});

t.test('replicas.json cannot be written when a server crashes: the gateway restarts it and runs on', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  gw = await startGateway({
    ports: RANGE, state_dir: stateDir,
    deployments: [{ model: 'rw', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0'] }],
  });
  const admin = adminClient(gw.adminUrl);
  const pid = (await admin.deployment('rw-1'))!.replicas[0]!.pid!;
  // A directory where the file is: its atomic write's rename fails (EISDIR), as a full disk's would.
  rmSync(join(stateDir, 'replicas.json'));
  mkdirSync(join(stateDir, 'replicas.json'));
  process.kill(pid, 'SIGKILL');
  const view = await waitFor(async () => {
    const d = await admin.deployment('rw-1');
    return d?.replicas[0]?.state === 'ready' && d.replicas[0].pid !== pid ? d : undefined;
  }, 20_000, 'rw-1 restarted and ready');
  t.equal(view.replicas[0]!.restarts, 1, 'restarted once');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(gw.child.exitCode, null, 'the gateway runs on');
  t.equal((await fetch(`${gw.url}/rw-1/api/tags`)).status, 200, 'and routes to the restarted server');
  const logged = jsonLogs(gw).find((l) => l.msg === 'could not record a model server\'s pid: a gateway killed now would not find it');
  t.ok(logged, 'the failed write is logged');
  t.equal(logged?.level, 'error');
});
