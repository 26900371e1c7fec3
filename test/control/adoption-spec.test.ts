// A gateway restarted after a SIGKILL adopts a server it finds running only when the
// deployment would start that very server now. A changed spec (args here) stops the old
// server's group and starts the new spec's; replicas beyond the configured count are
// stopped; a record written by an older sluice, which kept no fingerprint, is restarted.
// An unchanged deployment beside them is still adopted.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, gwRequest, PidLog, pidAlive, reapServers, serversInRange, waitFor, waitState, type AdminClient, type DeploymentView } from '../helpers/control.js';

t.setTimeout(120_000);

// Ports 19228-19233 (replicas), 19234-19235 (gateway, admin) belong to this file.
const RANGE = { from: 19228, to: 19233 };
const dir = t.testdir();
const stateDir = join(dir, 'state');
const recordsFile = join(stateDir, 'replicas.json');
const pids = new PidLog();
const keep = { model: 'keep', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0'] };
const demo = (replicas: number, tokens: string): Record<string, unknown> => ({
  model: 'demo', version: '1', runtime: 'sim', replicas, args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', tokens],
});

let gw: Gateway | undefined;
let admin: AdminClient;

async function boot(deployments: Array<Record<string, unknown>>): Promise<Record<string, DeploymentView>> {
  gw = await startGateway({ listen: { host: '127.0.0.1', port: 19234 }, admin: { host: '127.0.0.1', port: 19235 }, ports: RANGE, state_dir: stateDir, deployments }, {}, false);
  admin = adminClient(gw.adminUrl);
  const views: Record<string, DeploymentView> = {};
  for (const d of deployments) {
    const id = `${d.model as string}-${d.version as string}`;
    views[id] = await waitState(admin, id, 'ready');
    pids.note(views[id]!);
  }
  return views;
}

async function crash(): Promise<void> {
  await gw!.stop('SIGKILL');
  gw = undefined;
}

async function evalCount(): Promise<number> {
  const r = await gwRequest(`${gw!.url}/demo-1/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', prompt: 'hi', stream: false }) });
  return (r.json as { eval_count: number }).eval_count;
}

const adoptedLines = (): unknown[] => jsonLogs(gw!).filter((l) => l.msg === 'adopted a running server from a previous gateway run').map((l) => l.replica);

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('a changed spec is started afresh after a SIGKILL, and replicas beyond the count are stopped', async (t) => {
  const before = await boot([demo(2, '400'), keep]);
  t.equal(await evalCount(), 400, 'the first run serves --tokens 400');
  const old = before['demo-1']!.replicas.map((r) => r.pid!);
  const kept = before['keep-1']!.replicas[0]!.pid!;
  await crash();
  t.ok(old.every(pidAlive) && pidAlive(kept), 'the servers outlive the SIGKILLed gateway');

  const after = await boot([demo(1, '5'), keep]);
  const now = after['demo-1']!.replicas;
  t.equal(now.length, 1, 'demo-1 has the one replica its spec asks for');
  t.notOk(old.includes(now[0]!.pid!), 'demo-1 runs a new server, not the old spec\'s');
  await waitFor(() => old.every((p) => !pidAlive(p)), 10_000, 'the old spec\'s servers to stop');
  t.pass('both servers of the old spec are gone (the one beyond the count too)');
  t.equal(await evalCount(), 5, 'the new spec is served: --tokens 5');
  t.equal(after['keep-1']!.replicas[0]!.pid, kept, 'the unchanged deployment\'s server was adopted');
  t.same(adoptedLines(), ['keep-1/0'], 'only it is logged as adopted');
  const raw = gw!.stdout.filter((l) => l.includes('"msg":"adopted a running server') || l.includes('"msg":"stopping a server left by a previous run'));
  t.same(raw.map((l) => l.split('"pid":').length - 1), [1, 1, 1], 'each adoption or stop line has one "pid" key: the gateway\'s');
  t.same(raw.map((l) => JSON.parse(l).server_pid as number).sort(), [...old, kept].sort(), 'and the server\'s as server_pid');
  t.same(serversInRange(RANGE.from, RANGE.to).map((p) => p.pid).sort(), [now[0]!.pid!, kept].sort(), 'exactly these two servers run');
});

t.test('a record from an older sluice, without a fingerprint, is not adopted', async (t) => {
  const before = await admin.list();
  const old = before.map((d) => d.replicas[0]!.pid!);
  await crash();
  const records = JSON.parse(readFileSync(recordsFile, 'utf8')) as Array<Record<string, unknown>>;
  t.equal(records.length, 2);
  t.ok(records.every((r) => typeof r.fingerprint === 'string'), 'this sluice records a fingerprint');
  writeFileSync(recordsFile, JSON.stringify(records.map(({ fingerprint: _, ...r }) => r)));

  const after = await boot([demo(1, '5'), keep]);
  for (const d of Object.values(after)) t.notOk(old.includes(d.replicas[0]!.pid!), `${d.id} runs a new server`);
  await waitFor(() => old.every((p) => !pidAlive(p)), 10_000, 'the unrecorded servers to stop');
  t.pass('the old servers are gone');
  t.same(adoptedLines(), [], 'nothing adopted');
  t.equal(await evalCount(), 5);
});
