import t, { type Test } from 'tap';
import { killGroup, PortAllocator, ReplicaProcess } from '../../src/ports/index.js';
import { launchOrphan, membersOf, nextState, serverArgv, writeScripts } from './fixtures/servers.js';

// Ports 18180-18189 belong to this file.
const ports = new PortAllocator({ from: 18180, to: 18189 });
const scripts = writeScripts(t.testdir());

const timing = { readinessIntervalMs: 30, probeTimeoutMs: 200, startTimeoutMs: 5000, stopGraceMs: 500 } as const;

async function orphan(t: Test): Promise<{ port: number; pid: number }> {
  const port = await ports.acquire();
  const pid = await launchOrphan(scripts, port, 'ok');
  t.teardown(async () => {
    await killGroup(pid, 500);
    ports.release(port);
  });
  return { port, pid };
}

t.test('a server left by a previous run is adopted, probed and stopped', async (t) => {
  const { port, pid } = await orphan(t);
  const r = ReplicaProcess.adopt({ id: 'adopted', argv: serverArgv(scripts, port, 'ok'), port, readinessPath: '/ping', pid, pgid: pid, ...timing });
  if (r === null) throw new Error('adoption refused a live server');
  t.teardown(() => r.stop());
  t.equal(r.state, 'starting');
  t.equal(r.pid, pid);
  t.equal(r.pgid, pid);
  await r.start();
  t.equal(r.state, 'ready');
  t.equal(r.pid, pid, 'no new process was spawned');
  t.ok(await r.probe());
  t.match(r.logs(), [{ stream: 'stderr', line: /adopted pid \d+ .*output is not captured/ }]);
  await r.stop();
  t.equal(r.state, 'stopped');
  t.same(membersOf(pid), [], 'no orphans');
});

t.test('an adopted server that dies is restarted from argv', async (t) => {
  const { port, pid } = await orphan(t);
  const r = ReplicaProcess.adopt({ id: 'adopted-crash', argv: serverArgv(scripts, port, 'ok'), port, readinessPath: '/ping', pid, pgid: pid, ...timing, restart: { backoffInitialMs: 10 } });
  if (r === null) throw new Error('adoption refused a live server');
  t.teardown(() => r.stop());
  await r.start();
  const restarting = nextState(r, 'restarting');
  process.kill(pid, 'SIGKILL');
  t.match(await restarting, { delayMs: 10 });
  await nextState(r, 'ready');
  t.not(r.pid, pid);
  t.equal(r.restarts, 1);
  t.ok(r.logs().some((l) => l.stream === 'stdout' && /listening on/.test(l.line)), 'the new process is captured');
  const newPgid = r.pgid as number;
  await r.stop();
  t.same(membersOf(newPgid), []);
  t.same(membersOf(pid), []);
});

t.test('adoption is refused for a dead pid or a pgid that does not match', async (t) => {
  const { port, pid } = await orphan(t);
  const base = { id: 'nope', argv: serverArgv(scripts, port, 'ok'), port, readinessPath: '/ping', ...timing };
  t.equal(ReplicaProcess.adopt({ ...base, pid, pgid: pid + 1 }), null, 'pid reused by another group');
  await killGroup(pid, 500);
  t.same(membersOf(pid), []);
  t.equal(ReplicaProcess.adopt({ ...base, pid, pgid: pid }), null, 'gone');
  t.throws(() => ReplicaProcess.adopt({ ...base, pid: 0, pgid: 0 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'pid' } });
  t.throws(() => ReplicaProcess.adopt({ ...base, port: -1, pid, pgid: pid }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'port' } });
});
