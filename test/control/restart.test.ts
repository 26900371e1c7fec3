// The gateway dies and comes back. After a SIGKILL its model servers keep running; the
// next run (same state dir) finds them through its pid records and adopts them, or stops
// them and starts fresh: never two servers for one replica, never a leaked port. After a
// clean stop (SIGTERM) every server is gone and every deployment comes back.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import {
  adminClient, assertNoServersLeft, canBind, groupPids, gwRequest, PidLog, pidAlive, reapServers, serverCommand, serversInRange,
  waitFor, waitState, writeServerScript, type AdminClient, type DeploymentView,
} from '../helpers/control.js';

t.setTimeout(180_000);

// Replica ports 18550-18569 belong to this file.
const RANGE = { from: 18550, to: 18569 };
const dir = t.testdir();
const stateDir = join(dir, 'state');
const script = writeServerScript(dir);
const pids = new PidLog();
const config = { ports: RANGE, state_dir: stateDir };

let gw: Gateway | undefined;
let admin: AdminClient;

async function boot(): Promise<Gateway> {
  gw = await startGateway(config, {}, false);
  admin = adminClient(gw.adminUrl);
  return gw;
}

async function crash(): Promise<void> {
  const g = gw!;
  gw = undefined;
  await g.stop('SIGKILL');
}

async function ready(id: string): Promise<DeploymentView> {
  const v = await waitState(admin, id, 'ready', 20_000);
  pids.note(v);
  return v;
}

/** Live model servers on `port` (sim or command runtime): there must never be two. */
const serversOn = (port: number): number[] => serversInRange(port, port).map((p) => p.pid);

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('after a SIGKILL the next run adopts the running servers', async (t) => {
  await boot();
  const keep = await admin.post('/v1/deployments?wait=true', { model: 'keep', version: '1', runtime: 'sim' });
  const cmd = await admin.post('/v1/deployments?wait=true', { model: 'cmd', version: '1', runtime: 'command', command: serverCommand(script, 'ok'), readiness_path: '/ping' });
  pids.note([keep.body, cmd.body]);
  t.equal(keep.status, 201);
  t.equal(cmd.status, 201);
  const [p1, port1] = [keep.body.replicas[0].pid as number, keep.body.replicas[0].port as number];
  const [p2, port2] = [cmd.body.replicas[0].pid as number, cmd.body.replicas[0].port as number];

  await crash();
  t.ok(pidAlive(p1) && pidAlive(p2), 'the servers outlive a SIGKILLed gateway (by design: the next run adopts them)');
  const records = JSON.parse(readFileSync(join(stateDir, 'replicas.json'), 'utf8')) as Array<{ replica: string; pid: number; port: number }>;
  t.same(records.map((r) => [r.replica, r.pid, r.port]).sort(), [['cmd-1/0', p2, port2], ['keep-1/0', p1, port1]], 'their pids and ports are on record');

  await boot();
  const k = await ready('keep-1');
  const c = await ready('cmd-1');
  t.equal(k.replicas[0]!.pid, p1, 'keep-1: the same server was adopted');
  t.equal(k.replicas[0]!.port, port1, 'on the same port');
  t.equal(c.replicas[0]!.pid, p2, 'cmd-1: the same server was adopted');
  t.same(serversOn(port1), [p1], 'exactly one server for keep-1');
  t.same(serversOn(port2), [p2], 'exactly one server for cmd-1');
  t.equal((await gwRequest(`${gw!.url}/keep-1/_sim/stats`)).status, 200, 'keep-1 serves through the new gateway');
  const ping = await gwRequest(`${gw!.url}/cmd-1/ping`);
  t.equal(ping.status, 200, 'cmd-1 serves through the new gateway');
  t.equal(ping.json.pid, p2, 'from the adopted process');
  t.equal((await gwRequest(`${gw!.url}/cmd-1/log/after-adoption`)).status, 200);
  const logs = await waitFor(async () => {
    const l = await admin.get('/v1/deployments/cmd-1/logs');
    return l.body.lines.some((x: { line: string }) => x.line === 'request /log/after-adoption') ? l : undefined;
  }, 5_000, 'the adopted server\'s new output in the logs endpoint');
  t.ok(logs, 'what the adopted server prints reaches the logs endpoint');

  const fresh = await admin.post('/v1/deployments?wait=true', { model: 'fresh', version: '1', runtime: 'sim' });
  pids.note(fresh.body);
  t.equal(fresh.status, 201);
  t.notOk([port1, port2].includes(fresh.body.replicas[0].port), 'an adopted port is never handed out again');
});

t.test('a server that died while the gateway was down is started afresh, once', async (t) => {
  const before = await admin.list();
  const cmdBefore = before.find((d) => d.id === 'cmd-1')!.replicas[0]!;
  const freshBefore = before.find((d) => d.id === 'fresh-1')!.replicas[0]!;
  await crash();
  process.kill(-cmdBefore.pid!, 'SIGKILL');
  await waitFor(() => groupPids(cmdBefore.pid!).length === 0, 5_000, 'cmd-1\'s server to die');

  await boot();
  const c = await ready('cmd-1');
  t.not(c.replicas[0]!.pid, cmdBefore.pid, 'cmd-1 runs a new server');
  t.same(serversOn(c.replicas[0]!.port), [c.replicas[0]!.pid], 'exactly one server on its port');
  const ping = await gwRequest(`${gw!.url}/cmd-1/ping`);
  t.equal(ping.status, 200);
  t.equal(ping.json.pid, c.replicas[0]!.pid, 'the route reaches the new server');
  const f = await ready('fresh-1');
  t.equal(f.replicas[0]!.pid, freshBefore.pid, 'fresh-1 was adopted');
  const used = (await admin.list()).map((d) => d.replicas[0]!.port);
  t.equal(new Set(used).size, used.length, `no port is used twice (${used.join(', ')})`);
});

t.test('a server killed while starting is not doubled by the next run', async (t) => {
  const r = await admin.post('/v1/deployments', { model: 'late', version: '1', runtime: 'command', command: serverCommand(script, 'slow', '2500'), readiness_path: '/ping' });
  pids.note(r.body);
  t.equal(r.body.state, 'starting');
  const pid = r.body.replicas[0].pid as number;
  const port = r.body.replicas[0].port as number;
  await crash();
  await boot();
  const v = await ready('late-1');
  const now = v.replicas[0]!.pid!;
  t.same(serversOn(port), [now], 'exactly one server on its port');
  t.ok(now === pid || !pidAlive(pid), `adopted (${now === pid}) or the old one is gone`);
  t.equal((await gwRequest(`${gw!.url}/late-1/ping`)).status, 200);
});

t.test('a server no deployment claims any more is stopped', async (t) => {
  const fresh = (await admin.deployment('fresh-1'))!.replicas[0]!;
  await crash();
  // The desired state lost fresh-1 while the gateway was down (an operator edit).
  const file = join(stateDir, 'desired.json');
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { deployments: Array<{ spec: { model: string } }> };
  doc.deployments = doc.deployments.filter((d) => d.spec.model !== 'fresh');
  writeFileSync(file, JSON.stringify(doc));
  t.ok(pidAlive(fresh.pid!), 'its server still runs');

  await boot();
  t.equal(await admin.deployment('fresh-1'), null, 'fresh-1 is not deployed');
  t.notOk(pidAlive(fresh.pid!), 'its server was stopped at start-up');
  t.equal(await canBind(fresh.port), true, 'its port is free');
  const records = JSON.parse(readFileSync(join(stateDir, 'replicas.json'), 'utf8')) as Array<{ replica: string }>;
  t.notOk(records.some((r) => r.replica.startsWith('fresh-1/')), 'and its record is gone');
});

t.test('after a clean stop every server is gone, and every deployment comes back', async (t) => {
  const before = await admin.list();
  t.same(before.map((d) => d.id).sort(), ['cmd-1', 'keep-1', 'late-1']);
  const old = before.map((d) => d.replicas[0]!);
  t.equal(await gw!.stop(), 0, 'SIGTERM: exit 0');
  gw = undefined;
  for (const r of old) {
    t.notOk(pidAlive(r.pid!), `${r.id}'s server stopped`);
    t.equal(await canBind(r.port), true, `port ${r.port} released`);
  }
  t.same(JSON.parse(readFileSync(join(stateDir, 'replicas.json'), 'utf8')), [], 'no pid left on record');

  await boot();
  for (const d of before) {
    const v = await ready(d.id);
    t.not(v.replicas[0]!.pid, null);
    t.notOk(old.some((r) => r.pid === v.replicas[0]!.pid), `${d.id} runs a new server`);
  }
  t.equal((await gwRequest(`${gw!.url}/keep-1/_sim/stats`)).status, 200);
  t.equal((await gwRequest(`${gw!.url}/cmd-1/ping`)).status, 200);
});

t.test('stopping the gateway stops every model server it started', async (t) => {
  t.equal(await gw!.stop(), 0, 'the gateway exits 0 on SIGTERM');
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE);
});
