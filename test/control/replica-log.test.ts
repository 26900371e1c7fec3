// The control plane's log lines about a replica name its server's pid `server_pid`: `pid`
// is pino's, the gateway's own, on every line, and a second `pid` key in one JSON object
// leaves a parser with only one of the two. A crash's line says how the server ended
// (exit_code, signal) and when the next one starts (restart_in_ms).

import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, gwRequest, PidLog, reapServers, waitFor, waitState, type AdminClient } from '../helpers/control.js';

t.setTimeout(60_000);

// Ports 19223-19224 (gateway, admin), 19225-19227 (replicas) belong to this file.
const RANGE = { from: 19225, to: 19227 };
const pids = new PidLog();
let gw: Gateway;
let admin: AdminClient;

/** Raw log lines with `msg`, parsed, each with how many times its text holds a "pid" key. */
function linesOf(proc: Gateway, msg: string): Array<{ line: Record<string, unknown>; pidKeys: number }> {
  return proc.stdout
    .filter((l) => l.startsWith('{') && l.includes(`"msg":${JSON.stringify(msg)}`))
    .map((l) => ({ line: JSON.parse(l) as Record<string, unknown>, pidKeys: l.split('"pid":').length - 1 }));
}

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19223 }, admin: { host: '127.0.0.1', port: 19224 }, ports: RANGE,
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  }, {}, false);
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('a replica state line carries the gateway\'s pid once, and the server\'s as server_pid', async (t) => {
  const v = await waitState(admin, 'demo-1', 'ready');
  pids.note(v);
  const ready = await waitFor(() => linesOf(gw, 'replica state').find((l) => l.line.state === 'ready'), 5_000, 'the ready line');
  t.equal(ready.pidKeys, 1, 'one "pid" key');
  t.equal(ready.line.pid, gw.child.pid, 'pid: the gateway\'s');
  t.equal(ready.line.server_pid, v.replicas[0]!.pid, 'server_pid: the model server\'s');
});

const restarting = (replica: string): Record<string, unknown> | undefined =>
  linesOf(gw, 'replica state').map((l) => l.line).find((l) => l.replica === replica && l.state === 'restarting');

t.test('a server that exits with a code: its restarting line says which, and the backoff', async (t) => {
  const r = await admin.post('/v1/deployments?wait=true', { model: 'crashy', version: '1', runtime: 'sim', args: ['--crash-after', '3', '--ttft-ms', '0', '--token-ms', '0'] });
  pids.note(r.body);
  t.equal(r.status, 201, r.text);
  await gwRequest(`${gw.url}/crashy-1/api/generate`, { method: 'POST', body: { model: 'crashy', prompt: 'hi', stream: false } });
  const line = await waitFor(() => restarting('crashy-1/0'), 10_000, 'crashy-1/0 restarting');
  t.equal(line.exit_code, 1, 'exit_code');
  t.equal(line.signal, null, 'no signal');
  t.equal(line.restart_in_ms, 500, 'restart_in_ms: the first backoff');
  t.equal(line.server_pid, r.body.replicas[0].pid, 'server_pid: the server that ended');
});

t.test('a server killed by a signal: its restarting line names it', async (t) => {
  const v = await waitState(admin, 'demo-1', 'ready');
  process.kill(v.replicas[0]!.pid!, 'SIGKILL');
  const line = await waitFor(() => restarting('demo-1/0'), 10_000, 'demo-1/0 restarting');
  t.equal(line.exit_code, null, 'no exit code');
  t.equal(line.signal, 'SIGKILL', 'signal');
  t.equal(line.restart_in_ms, 500, 'restart_in_ms');
  pids.note(await waitState(admin, 'demo-1', 'ready'));
});
