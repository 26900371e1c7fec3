import t from 'tap';
import { PortAllocator, ReplicaProcess } from '../../src/ports/index.js';
import { membersOf, nextState, recordStates, serverArgv, writeScripts } from './fixtures/servers.js';

// Ports 18170-18179 belong to this file.
const ports = new PortAllocator({ from: 18170, to: 18179 });
const scripts = writeScripts(t.testdir());

const timing = { readinessIntervalMs: 30, probeTimeoutMs: 200, startTimeoutMs: 5000, stopGraceMs: 500 } as const;

t.test('a server that crashes after ready is restarted with backoff, then fails', async (t) => {
  const port = await ports.acquire();
  t.teardown(() => ports.release(port));
  const r = new ReplicaProcess({
    id: 'crasher', argv: serverArgv(scripts, port, 'crash'), port, readinessPath: '/ping', ...timing,
    restart: { backoffInitialMs: 100, backoffMaxMs: 150, maxCrashes: 4, windowMs: 60_000 },
  });
  t.teardown(() => r.stop());
  const seen = recordStates(r);
  await r.start();
  const failed = await nextState(r, 'failed');
  t.same(seen.map((s) => s.state), [
    'starting', 'ready',
    'restarting', 'ready',
    'restarting', 'ready',
    'restarting', 'ready',
    'stopping', 'failed',
  ]);
  t.same(seen.filter((s) => s.state === 'restarting').map((s) => s.info.delayMs), [100, 150, 150], 'doubling, capped');
  t.match(seen.find((s) => s.state === 'restarting')?.info, { exitCode: 1, signal: null });
  t.equal(r.restarts, 3);
  t.match(failed.error, { code: 'SLUICE_ERR_INTERNAL', details: { reason: 'crash_loop', exitCode: 1 } });
  t.match(r.lastError?.message, /crashed 4 times within 60000 ms/);
  t.match(r.lastError?.message, /fatal: CUDA error: device lost/);
  // Each crash left a `sleep` behind in its group; none of them may survive.
  const pgids = seen.filter((s) => s.state === 'ready').map((s) => s.info.pgid as number);
  t.equal(new Set(pgids).size, 4, 'a fresh process group per run');
  for (const pgid of pgids) t.same(membersOf(pgid), [], `group ${pgid} is gone`);
  t.equal(r.pgid, undefined);
});

t.test('crashes outside the window do not add up', async (t) => {
  const port = await ports.acquire();
  t.teardown(() => ports.release(port));
  // The window is shorter than one ready-to-crash cycle, so every crash is the first.
  const r = new ReplicaProcess({
    id: 'slow-crasher', argv: serverArgv(scripts, port, 'crash'), port, readinessPath: '/ping', ...timing,
    restart: { backoffInitialMs: 20, backoffMaxMs: 1000, maxCrashes: 2, windowMs: 100 },
  });
  t.teardown(() => r.stop());
  const seen = recordStates(r);
  await r.start();
  await nextState(r, 'restarting');
  await nextState(r, 'restarting');
  await nextState(r, 'ready');
  t.same(seen.filter((s) => s.state === 'restarting').map((s) => s.info.delayMs), [20, 20]);
  t.notOk(seen.some((s) => s.state === 'failed'));
  await r.stop();
  t.equal(r.state, 'stopped');
});

t.test('stop() during the backoff wait ends supervision at once', async (t) => {
  const port = await ports.acquire();
  t.teardown(() => ports.release(port));
  const r = new ReplicaProcess({
    id: 'backoff', argv: serverArgv(scripts, port, 'crash'), port, readinessPath: '/ping', ...timing,
    restart: { backoffInitialMs: 20_000, backoffMaxMs: 20_000, maxCrashes: 5, windowMs: 60_000 },
  });
  t.teardown(() => r.stop());
  await r.start();
  const pgid = r.pgid as number;
  await nextState(r, 'restarting');
  const started = Date.now();
  await r.stop();
  t.ok(Date.now() - started < 2000, 'did not wait out the backoff');
  t.equal(r.state, 'stopped');
  t.equal(r.restarts, 0);
  t.same(membersOf(pgid), []);
});
