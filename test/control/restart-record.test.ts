// A model server restarted after a crash is on record (replicas.json) from its spawn, not
// only once it is ready: a server that loads for long (llama.cpp, mlflow) would otherwise be
// unknown to a gateway killed meanwhile. Before, the next start stopped the dead first
// server's group and started another server beside the restarted one, which ran on as an
// orphan holding the port (so the new one could not bind it and the deployment failed).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, serversInRange, waitFor } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 24120-24129 belong to this file.
const RANGE = { from: 24120, to: 24129 };
const gateways: Gateway[] = [];

t.teardown(async () => {
  for (const g of gateways) await g.stop('SIGKILL');
  await reapServers([], RANGE);
});

// model-server.mjs (so that the helpers find it by its port: serversInRange). First run: ready
// at once, crashes after 1 s. Every later run (the restart) listens at once but answers its
// readiness path 503 for 6 s, as a server loading its model.
const SERVER = `
import http from 'node:http';
import { existsSync, writeFileSync } from 'node:fs';
const [port, marker] = process.argv.slice(2);
const first = !existsSync(marker);
writeFileSync(marker, String(process.pid) + '\\n', { flag: 'a' });
const started = Date.now();
http.createServer((req, res) => {
  res.writeHead(first || Date.now() - started > 6000 ? 200 : 503);
  res.end();
}).listen(Number(port), '127.0.0.1', () => {
  if (first) setTimeout(() => process.exit(1), 1000);
});
`;

function recordedPids(stateDir: string): number[] {
  try {
    return (JSON.parse(readFileSync(join(stateDir, 'replicas.json'), 'utf8')) as Array<{ pid: number }>).map((r) => r.pid);
  } catch {
    return [];
  }
}

t.test('a gateway killed while a restarted server loads: the next one adopts that server', async (t) => {
  const dir = t.testdir();
  const script = join(dir, 'model-server.mjs');
  writeFileSync(script, SERVER);
  const stateDir = join(dir, 'state');
  const config = {
    ports: RANGE, state_dir: stateDir,
    deployments: [{ model: 'rs', version: '1', runtime: 'command', command: [process.execPath, script, '{port}', join(dir, 'marker')], readiness_path: '/', start_timeout_ms: 30_000 }],
  };
  const first = await startGateway(config);
  gateways.push(first);
  const admin = adminClient(first.adminUrl);
  const firstPid = (await admin.deployment('rs-1'))!.replicas[0]!.pid;
  const restarted = await waitFor(async () => {
    const r = (await admin.deployment('rs-1'))?.replicas[0];
    return r !== undefined && r.restarts === 1 && r.pid !== null && r.pid !== firstPid && r.state !== 'ready' ? r.pid : undefined;
  }, 20_000, 'the crashed server restarted, still loading');
  await t.resolves(waitFor(() => recordedPids(stateDir).includes(restarted), 5_000, `replicas.json to name the restarted pid ${restarted}`), 'the restarted server is on record while it loads');

  await first.stop('SIGKILL');
  const second = await startGateway(config, {}, false);
  gateways.push(second);
  const view = await waitFor(async () => {
    const d = await adminClient(second.adminUrl).deployment('rs-1');
    return d !== null && (d.state === 'ready' || d.state === 'failed') ? d : undefined;
  }, 30_000, 'rs-1 settled on the second gateway');
  t.equal(view.state, 'ready', `rs-1 is ready (last error: ${view.last_error})`);
  t.equal(view.replicas[0]!.pid, restarted, 'on the restarted server, adopted');
  t.same(serversInRange(RANGE.from, RANGE.to).map((p) => p.pid), [restarted], 'and no other server runs');
});
