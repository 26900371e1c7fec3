import t, { type Test } from 'tap';
import { PortAllocator, ReplicaProcess, type ReplicaProcessOptions } from '../../src/ports/index.js';
import { membersOf, nextState, recordStates, serverArgv, writeScripts, type Mode } from './fixtures/servers.js';

// Ports 18140-18159 belong to this file.
const ports = new PortAllocator({ from: 18140, to: 18159 });
const scripts = writeScripts(t.testdir());

async function replica(t: Test, mode: Mode, extra: Partial<ReplicaProcessOptions> = {}): Promise<ReplicaProcess> {
  const port = await ports.acquire();
  const r = new ReplicaProcess({
    id: `start-${mode}`,
    argv: serverArgv(scripts, port, mode),
    port,
    readinessPath: '/ping',
    readinessIntervalMs: 50,
    probeTimeoutMs: 200,
    startTimeoutMs: 5000,
    stopGraceMs: 1000,
    ...extra,
  });
  t.teardown(async () => {
    await r.stop();
    ports.release(port);
  });
  return r;
}

t.test('a healthy server becomes ready, logs are captured, stop leaves nothing', async (t) => {
  const r = await replica(t, 'ok');
  const seen = recordStates(r);
  t.equal(r.state, 'stopped');
  await r.start();
  t.equal(r.state, 'ready');
  t.equal(r.pid, r.pgid, 'the child leads its own process group');
  const pgid = r.pgid as number;
  t.not(pgid, process.pid);
  t.ok(await r.probe());
  await r.start(); // already ready: no second process
  t.equal(r.pgid, pgid);
  t.match(r.logs(), [{ stream: 'stdout', line: /listening on \d+/, at: Number }]);
  await r.stop();
  t.same(membersOf(pgid), []);
  t.equal(r.state, 'stopped');
  t.equal(r.pid, undefined);
  t.same(seen.map((s) => s.state), ['starting', 'ready', 'stopping', 'stopped']);
  t.match(seen[1]?.info, { id: 'start-ok', pid: pgid, pgid, restarts: 0 });
  t.match(seen[3]?.info, { forced: false });
});

t.test('a server that never answers fails at the start timeout with its last log lines', async (t) => {
  const r = await replica(t, 'hang', { startTimeoutMs: 800, stopGraceMs: 300 });
  const started = Date.now();
  await t.rejects(r.start(), { code: 'SLUICE_ERR_INTERNAL', details: { reason: 'start_timeout', replica: 'start-hang' } });
  t.ok(Date.now() - started >= 800, 'waited the whole start timeout');
  t.equal(r.state, 'failed');
  t.equal(r.pgid, undefined, 'the group was killed on failure');
  const message = r.lastError?.message ?? '';
  t.match(message, /did not answer GET \/ping with 200 within 800 ms/);
  t.match(message, /\[stdout\] \[server \d+\] loading weights \d+/);
  t.ok(message.split('\n').length <= 22, 'about 20 lines, not the whole buffer');
  t.ok(r.logs().length > 20, `more than 20 lines were kept (${r.logs().length})`);
});

t.test('a server that exits at once: the message lands in lastError', async (t) => {
  const r = await replica(t, 'exit-at-once');
  const seen = recordStates(r);
  await t.rejects(r.start(), { code: 'SLUICE_ERR_INTERNAL', details: { reason: 'exited', exitCode: 3 } });
  t.equal(r.state, 'failed');
  t.match(r.lastError?.message, /exited with code 3 before becoming ready/);
  t.match(r.lastError?.message, /\[stderr\] fatal: model weights not found at \/nowhere\/iris/);
  t.same(seen.map((s) => s.state), ['starting', 'stopping', 'failed']);
  t.equal(seen[2]?.info.error, r.lastError);
  await r.stop();
  t.equal(r.state, 'failed', 'stop() on a failed replica changes nothing');
});

t.test('an executable that does not exist fails with a spawn error', async (t) => {
  const r = await replica(t, 'ok', { argv: ['/nonexistent/model-server', '--port', '1'] });
  await t.rejects(r.start(), { code: 'SLUICE_ERR_INTERNAL', details: { reason: 'spawn' } });
  t.match(r.lastError?.message, /could not be started: .*ENOENT/);
});

t.test('failed replicas can be started again', async (t) => {
  const r = await replica(t, 'ok', { argv: [process.execPath, '-e', 'process.exit(1)'] });
  await t.rejects(r.start());
  await t.rejects(r.start());
  t.equal(r.state, 'failed');
});

t.test('stop() while starting rejects start() and kills the group', async (t) => {
  const r = await replica(t, 'hang', { startTimeoutMs: 10_000 });
  const starting = r.start();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const pgid = r.pgid as number;
  t.ok(membersOf(pgid).length > 0);
  const a = r.stop();
  const b = r.stop();
  t.equal(a, b, 'concurrent stop() calls share one promise');
  await t.rejects(starting, { code: 'SLUICE_ERR_INTERNAL', details: { reason: 'stopped' } });
  await a;
  t.equal(r.state, 'stopped');
  t.same(membersOf(pgid), []);
  await r.stop();
  t.equal(r.state, 'stopped');
});

t.test('start() after stop() spawns a new process', async (t) => {
  const r = await replica(t, 'ok');
  await r.start();
  const first = r.pid;
  await r.stop();
  const restarted = r.start();
  t.equal(r.state, 'starting');
  await restarted;
  t.not(r.pid, first);
  const stopping = r.stop();
  const again = r.start(); // waits for the stop, then starts afresh
  await stopping;
  await again;
  t.equal(r.state, 'ready');
});

t.test('stop() on a replica never started is a no-op', async (t) => {
  const r = await replica(t, 'ok');
  const seen = recordStates(r);
  await r.stop();
  t.same(seen, []);
  t.equal(r.state, 'stopped');
});

t.test('options: defaults, and rejected with the field named', async (t) => {
  const base = { id: 'x', argv: ['true'], port: 18150, readinessPath: '/ping' };
  const bad = (patch: object, field: string): void => {
    t.throws(() => new ReplicaProcess({ ...base, ...patch } as ReplicaProcessOptions), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field } }, field);
  };
  bad({ stopGrace: 5 }, 'stopGrace');
  bad({ restart: { maxCrash: 1 } }, 'restart.maxCrash');
  bad({ restart: { backoffInitialMs: 100, backoffMaxMs: 50 } }, 'restart.backoffMaxMs');
  bad({ argv: [] }, 'argv');
  bad({ argv: [''] }, 'argv[0]');
  bad({ argv: ['node', 'a\0b'] }, 'argv[1]');
  bad({ port: 0 }, 'port');
  bad({ readinessPath: 'ping' }, 'readinessPath');
  bad({ readinessPath: '/a b' }, 'readinessPath');
  bad({ env: { 'A=B': 'x' } }, 'env.A=B');
  bad({ env: { A: 1 } }, 'env.A');
  bad({ startTimeoutMs: 2 ** 31 }, 'startTimeoutMs');
  bad({ id: '' }, 'id');
  const r = new ReplicaProcess(base);
  t.equal(r.host, '127.0.0.1');
  t.equal(r.port, 18150);
  t.equal(r.state, 'stopped');
  t.equal(r.restarts, 0);
});

t.test('ready is announced with its info', async (t) => {
  const r = await replica(t, 'ok');
  const ready = nextState(r, 'ready');
  await r.start();
  t.match(await ready, { restarts: 0 });
});
