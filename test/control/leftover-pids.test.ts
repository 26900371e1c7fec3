// replicas.json from a previous run names pids that may belong to other processes by now
// (a container restarted: its pids start over). A record carries its server's start time;
// a gateway starting up adopts or stops only the processes that are still that server, and
// leaves a process that merely got the same pid alone.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19110-19119 belong to this file.
const RANGE = { from: 19110, to: 19119 };

/** A process of its own group (as a model server is), not the gateway's; killed at teardown. */
function bystander(): number {
  const child = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  child.unref();
  t.teardown(() => {
    try {
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      // already gone: the failure the test reports
    }
  });
  return child.pid!;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function startTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

t.test('a recorded pid that is another process now is neither adopted nor stopped', async (t) => {
  const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-leftover-')), 'state');
  mkdirSync(stateDir, { recursive: true });
  const claimed = bystander();
  const unclaimed = bystander();
  const ours = bystander();
  writeFileSync(join(stateDir, 'replicas.json'), JSON.stringify([
    // demo-1's replica, on the port it will get again, but the pid started later than the record says.
    { replica: 'demo-1/0', port: RANGE.from, pid: claimed, pgid: claimed, started: startTicks(claimed) - 100 },
    // No deployment claims these: a reused pid is left alone, the recorded server itself is stopped.
    { replica: 'gone-1/0', port: RANGE.from + 5, pid: unclaimed, pgid: unclaimed, started: startTicks(unclaimed) - 100 },
    { replica: 'old-1/0', port: RANGE.from + 6, pid: ours, pgid: ours, started: startTicks(ours) },
  ]));
  const gw: Gateway = await startGateway({
    ports: RANGE, state_dir: stateDir,
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0'] }],
  });
  try {
    t.ok(alive(claimed), 'the process under demo-1/0\'s old pid was not stopped');
    t.ok(alive(unclaimed), 'nor the one under an unclaimed record\'s pid');
    await t.resolves(waitDead(ours), 'the recorded server itself (same start time) was stopped');
    const view = (await (await fetch(`${gw.adminUrl}/v1/deployments/demo-1`)).json()) as { state: string; replicas: Array<{ pid: number }> };
    t.equal(view.state, 'ready');
    t.not(view.replicas[0]!.pid, claimed, 'demo-1 runs a server of its own, not the adopted stranger');
    t.equal((await fetch(`${gw.url}/demo-1/api/tags`)).status, 200, 'and it answers');
    const records = JSON.parse(readFileSync(join(stateDir, 'replicas.json'), 'utf8')) as Array<{ replica: string; pid: number; started?: number }>;
    t.same(records.map((r) => r.replica), ['demo-1/0'], 'only the new server is on record');
    t.equal(records[0]!.started, startTicks(records[0]!.pid), 'with its start time');
  } finally {
    await gw.stop();
  }
});

async function waitDead(pid: number): Promise<void> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) throw new Error(`pid ${pid} still runs`);
}
