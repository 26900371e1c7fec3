// A data-plane worker that dies (a bug: an uncaught error) is replaced, as nginx's master
// replaces a worker that crashed. It used to stay dead: the gateway ran on the other
// worker alone (with one worker, on none), while /readyz said ready and
// sluice_data_plane_workers still counted it. Its counters must not go back either:
// Prometheus would read the drop as a reset.
//
// Replica ports 28400-28404 belong to this file; the gateway's and the admin's are ephemeral.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { httpRequest, metric } from '../helpers/http.js';
import { eventually, jsonLogs, metricsText, replicaPorts, startGateway, type Gateway } from '../helpers/procs.js';

const HOOK = fileURLToPath(new URL('../helpers/worker-crash-hook.mjs', import.meta.url));
const crashFile = join(mkdtempSync(join(tmpdir(), 'sluice-worker-crash-')), 'crash');
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 28400, to: 28404 },
    workers: 2,
    log: { level: 'info', access: true },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  }, { NODE_OPTIONS: `--import=${HOOK}`, SLUICE_TEST_WORKER_CRASH_FILE: crashFile });
});
t.teardown(() => gw?.stop());

/** `n` requests, each on a new connection (the kernel picks a worker each time); the workers whose access lines name them. */
async function serveOnFreshConnections(t: Test, n: number, tag: string): Promise<Set<unknown>> {
  const ids = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await httpRequest(`${gw.url}/demo-1/_sim/echo`, { headers: { 'x-request-id': `${tag}-${i}` } });
    if (r.status !== 200) t.fail(`request ${tag}-${i}: ${r.status}`);
    ids.add(`${tag}-${i}`);
  }
  const lines = await eventually(() => {
    const found = jsonLogs(gw).filter((l) => ids.has(l.request_id as string));
    return found.length === n ? found : undefined;
  }, 5_000, `the access lines of the ${n} requests ${tag}-*`);
  return new Set(lines.map((l) => l.worker));
}

t.test('a worker that dies is replaced, and its counts are kept', async (t) => {
  t.same([...await serveOnFreshConnections(t, 40, 'before')].sort(), [0, 1], 'both workers serve');
  const before = metric(await metricsText(gw), 'sluice_requests_total', { deployment: 'demo-1' });
  t.equal(before, 40);

  writeFileSync(crashFile, '');
  await eventually(() => jsonLogs(gw).find((l) => l.msg === 'data-plane worker started in place of the one that exited'), 10_000, 'a worker started in place of the dead one');
  const died = jsonLogs(gw).find((l) => typeof l.msg === 'string' && l.msg.startsWith('data-plane worker exited unexpectedly'));
  t.ok(died, 'the death is logged');

  t.equal((await httpRequest(`${gw.adminUrl}/readyz`)).status, 200, 'ready');
  const text = await metricsText(gw);
  t.equal(metric(text, 'sluice_data_plane_workers'), 2, 'two workers run again');
  t.equal(metric(text, 'sluice_data_plane_worker_restarts_total'), 1);
  t.ok(metric(text, 'sluice_requests_total', { deployment: 'demo-1' }) >= before, 'the dead worker\'s requests still count');

  t.same([...await serveOnFreshConnections(t, 40, 'after')].sort(), [0, 1], 'and both serve: the new one has joined the port');
  t.equal(metric(await metricsText(gw), 'sluice_requests_total', { deployment: 'demo-1' }), 80, 'every request counted once');
});

t.test('the only worker dies: another takes the port again', async (t) => {
  // A file of its own: the first gateway's workers watch the other.
  const soloCrash = `${crashFile}-solo`;
  const single = await startGateway({
    ports: { from: 28400, to: 28404 },
    workers: 1,
    log: { level: 'info', access: false },
    deployments: [{ model: 'solo', version: '1', runtime: 'sim' }],
  }, { NODE_OPTIONS: `--import=${HOOK}`, SLUICE_TEST_WORKER_CRASH_FILE: soloCrash });
  t.teardown(() => single.stop());
  t.equal((await httpRequest(`${single.url}/solo-1/_sim/echo`)).status, 200);
  writeFileSync(soloCrash, '');
  await eventually(() => jsonLogs(single).find((l) => l.msg === 'data-plane worker started in place of the one that exited'), 10_000, 'a worker started in place of the dead one');
  t.equal((await httpRequest(`${single.url}/solo-1/_sim/echo`)).status, 200, 'served again');
  t.equal(metric(await metricsText(single), 'sluice_data_plane_workers'), 1);
});

t.test('what the dead worker held of max_inflight and the queue is given back', async (t) => {
  const heldCrash = `${crashFile}-held`;
  const single = await startGateway({
    ports: { from: 28400, to: 28404 },
    workers: 1,
    log: { level: 'info', access: false },
    deployments: [{
      model: 'held', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '1500', '--tokens', '1'],
      policies: { queue: { max_inflight_per_replica: 1, max_length: 1, max_wait_ms: 20_000 } },
    }],
  }, { NODE_OPTIONS: `--import=${HOOK}`, SLUICE_TEST_WORKER_CRASH_FILE: heldCrash });
  t.teardown(() => single.stop());
  const chat = (): Promise<number> => httpRequest(`${single.url}/held-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'held', messages: [{ role: 'user', content: 'hi' }] }),
  }).then((r) => r.status, () => 0);
  const held = async (): Promise<{ inflight: number; queued: number }> => {
    const text = await metricsText(single);
    return { inflight: metric(text, 'sluice_replica_inflight', { deployment: 'held-1' }), queued: metric(text, 'sluice_queue_depth', { deployment: 'held-1' }) };
  };
  // One request on the replica's only slot, one in the queue's only place: both die with the worker.
  const lost = [chat(), chat()];
  await eventually(async () => {
    const h = await held();
    return h.inflight === 1 && h.queued === 1 ? h : undefined;
  }, 5_000, 'a request in flight and one queued');
  writeFileSync(heldCrash, '');
  await eventually(() => jsonLogs(single).find((l) => l.msg === 'data-plane worker started in place of the one that exited'), 10_000, 'a worker started in place of the dead one');
  t.same(await Promise.all(lost), [0, 0], 'their connections died with the worker');
  t.same(await held(), { inflight: 0, queued: 0 }, 'the slot and the place they held are free again');
  // Left held, the first would wait its 20 s in the queue, and the second be refused (queue full).
  const started = Date.now();
  t.same(await Promise.all([chat(), chat()]), [200, 200], 'both served: one on the replica, one after it in the queue');
  t.ok(Date.now() - started < 10_000, `in ${Date.now() - started} ms`);
});

t.test('a breaker probe the dead worker held is given back: the replica is probed again', async (t) => {
  const probeCrash = `${crashFile}-probe`;
  const single = await startGateway({
    ports: { from: 28400, to: 28404 },
    workers: 1,
    log: { level: 'info', access: false },
    deployments: [{
      model: 'probed', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '0', '--tokens', '1'],
      policies: { breaker: { consecutive_failures: 2, reset_timeout_ms: 300 }, retry: { attempts: 1 } },
    }],
  }, { NODE_OPTIONS: `--import=${HOOK}`, SLUICE_TEST_WORKER_CRASH_FILE: probeCrash });
  t.teardown(() => single.stop());
  const [port] = await replicaPorts(single, 'probed-1');
  const simConfig = async (body: Record<string, unknown>): Promise<void> => {
    t.equal((await httpRequest(`http://127.0.0.1:${port}/_sim/config`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status, 200);
  };
  const chat = (): Promise<number> => httpRequest(`${single.url}/probed-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'probed', messages: [{ role: 'user', content: 'hi' }] }),
  }).then((r) => r.status, () => 0);
  const breaker = async (): Promise<number> => metric(await metricsText(single), 'sluice_breaker_state', { deployment: 'probed-1' });

  await simConfig({ status: 500 });
  t.same([await chat(), await chat()], [500, 500]);
  t.equal(await breaker(), 1, 'the breaker opened');
  // Healthy again but slow: the probe is out (half-open) when its worker dies.
  await simConfig({ status: 0, ttft_ms: 5_000 });
  await new Promise((r) => setTimeout(r, 400));
  const probe = chat();
  await eventually(async () => (await breaker()) === 2 ? true : undefined, 5_000, 'the probe to be out (half-open)');
  writeFileSync(probeCrash, '');
  await eventually(() => jsonLogs(single).find((l) => l.msg === 'data-plane worker started in place of the one that exited'), 10_000, 'a worker started in place of the dead one');
  t.equal(await probe, 0, 'the probe died with the worker');
  await simConfig({ ttft_ms: 0 });
  // Left half-open, the breaker would refuse every request until a restart.
  t.equal(await chat(), 200, 'the next request probes, and is served');
  t.equal(await breaker(), 0, 'the breaker closed');
});
