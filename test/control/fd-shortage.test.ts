// A gateway short of file descriptors (a low `ulimit -n`, a burst of client connections)
// must still see its model servers as they are: a look at /proc that fails for want of a
// descriptor is not a process that is gone. It was taken for one: a stop reported servers
// `stopped` and forgot them while they ran on, and adopted servers were restarted over
// their own ports until their deployment failed.
//
// Replica ports 26800-26819 belong to this file; the gateways listen on port 0.

import { connect, type Socket } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, PidLog, reapServers, sleep, type DeploymentView } from '../helpers/control.js';

t.setTimeout(180_000);

const RANGE = { from: 26800, to: 26819 };
const pids = new PidLog();
const running = new Set<Gateway>();

t.teardown(async () => {
  for (const gw of running) await gw.stop('SIGKILL');
  await reapServers(pids.pids, RANGE);
});

async function launch(config: Record<string, unknown>, openFiles?: number): Promise<Gateway> {
  const gw = await startGateway({ ports: RANGE, ...config }, {}, true, openFiles === undefined ? {} : { openFiles });
  running.add(gw);
  return gw;
}

async function view(gw: Gateway, id: string): Promise<DeploymentView> {
  const r = await adminClient(gw.adminUrl).get(`/v1/deployments/${id}`);
  pids.note(r.body);
  return r.body as DeploymentView;
}

/** Opens `n` idle client connections to the gateway port, more than its descriptors allow, for `ms`. */
async function flood(gw: Gateway, n: number, ms: number): Promise<void> {
  const sockets: Socket[] = [];
  for (let i = 0; i < n; i++) sockets.push(connect(gw.port, '127.0.0.1').on('error', () => undefined));
  await sleep(ms);
  for (const s of sockets) s.destroy();
}

t.test('a stop under `ulimit -n 200` stops every one of 8 servers, not only those its /proc scans could see', async (t) => {
  // Eight stops at once each scanned all of /proc with one descriptor per process.
  const gw = await launch({ deployments: [{ model: 'many', version: '1', runtime: 'sim', replicas: 8 }] }, 200);
  const d = await view(gw, 'many-1');
  t.equal(d.replicas.filter((r) => r.state === 'ready').length, 8, 'eight servers ready');
  running.delete(gw);
  t.equal(await gw.stop(), 0, 'the gateway stopped cleanly');
  await assertNoServersLeft(t, pids.pids, RANGE);
});

t.test('adopted servers are not taken for exited while client connections use up the descriptors', async (t) => {
  const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-fd-')), 'state');
  const config = { state_dir: stateDir, deployments: [{ model: 'kept', version: '1', runtime: 'sim', replicas: 2 }] };
  const first = await launch(config);
  const before = (await view(first, 'kept-1')).replicas.map((r) => r.pid);
  running.delete(first);
  await first.stop('SIGKILL');
  // The next run adopts both servers, and follows them through /proc (they are not its children).
  const gw = await launch(config, 256);
  t.same((await view(gw, 'kept-1')).replicas.map((r) => r.pid), before, 'both servers adopted');
  await flood(gw, 400, 3_000);
  await sleep(1_000);
  const after = await view(gw, 'kept-1');
  t.equal(after.state, 'ready', 'the deployment is still ready');
  t.same(after.replicas.map((r) => [r.pid, r.state, r.restarts]), before.map((pid) => [pid, 'ready', 0]), 'the same two servers, ready, never restarted');
  t.equal((await fetch(`${gw.url}/kept-1/api/tags`)).status, 200, 'and they serve');
  running.delete(gw);
  t.equal(await gw.stop(), 0);
  await assertNoServersLeft(t, pids.pids, RANGE);
});
