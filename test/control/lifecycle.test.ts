// A deployment's life through the admin API with real processes: deploy answers at once
// (`starting`), `?wait=true` waits for ready or failed, readiness gates routing, a crashing
// replica is restarted with growing backoff and then `failed`, a start timeout fails with
// the server's last log lines, stop takes the whole process group (SIGTERM, grace,
// SIGKILL), and undeploy drains: 404 at once for new requests, streams in flight finish.

import { createServer } from 'node:http';
import t from 'tap';
import { freePort } from '../fixtures/free-port.js';
import {
  assertNoServersLeft, canBind, commandFixture, groupPids, gwRequest, pidAlive, processesMatching, sleep, waitFor, waitState, type DeploymentView,
} from '../helpers/control.js';

t.setTimeout(180_000);

// Replica ports 18530-18549 belong to this file.
const RANGE = { from: 18530, to: 18549 };
const fx = commandFixture(t, RANGE, 20_000);
const { pids, command, script } = fx;

t.test('deploy answers at once with starting; the route serves only once the replica is ready', async (t) => {
  const t0 = performance.now();
  const r = await fx.admin.post('/v1/deployments', command('slow', 'slow', {}, '2000'));
  const took = performance.now() - t0;
  pids.note(r.body);
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.ok(took < 1000, `answered in ${Math.round(took)} ms, before the server is up`);
  t.equal(r.body.state, 'starting');
  t.equal(r.body.id, 'slow-1');
  t.equal(r.body.route, '/slow-1/');
  const replica = r.body.replicas[0];
  t.ok(replica.port >= RANGE.from && replica.port <= RANGE.to, `port ${replica.port} from the configured range`);
  t.ok(Number.isInteger(replica.pid) && pidAlive(replica.pid), 'the process runs');
  t.equal(replica.restarts, 0);
  t.equal(replica.last_error, null);

  // Sent during the start: held until the readiness probe passes (policies.hold), not refused.
  const early = gwRequest(`${fx.gw.url}/slow-1/ping`, { timeoutMs: 20_000 });

  const ready = await waitState(fx.admin, 'slow-1', 'ready', 15_000);
  const held = await early;
  t.equal(held.status, 200, 'a request sent during the start is answered once the server is ready');
  t.equal(held.json.pid, replica.pid);
  t.equal(ready.replicas[0]!.state, 'ready');
  t.equal(ready.replicas[0]!.pid, replica.pid, 'same process');
  const res = await gwRequest(`${fx.gw.url}/slow-1/ping`);
  t.equal(res.status, 200, 'routed once ready');
  t.equal(res.json.pid, replica.pid, 'to that process');
  t.equal(res.json.url, '/ping', 'with the route prefix stripped');

  const w0 = performance.now();
  const waited = await fx.admin.post('/v1/deployments?wait=true', command('slow', 'slow', { version: '2' }, '1500'));
  const waitedMs = performance.now() - w0;
  pids.note(waited.body);
  t.equal(waited.status, 201);
  t.equal(waited.body.state, 'ready', '?wait=true answers once ready');
  t.ok(waitedMs >= 1400, `after the server's 1.5 s start (${Math.round(waitedMs)} ms)`);
  t.equal((await gwRequest(`${fx.gw.url}/slow-2/ping`)).status, 200, 'and the route serves at once');

  const dup = await fx.admin.post('/v1/deployments', command('slow', 'ok'));
  t.equal(dup.status, 409, 'deploying the same model version twice: 409');
  t.equal((await fx.admin.get('/v1/deployments/slow-1')).body.replicas[0].pid, replica.pid, 'the running one is untouched');

  for (const id of ['slow-1', 'slow-2']) t.equal((await fx.admin.del(`/v1/deployments/${id}?grace_ms=0`)).status, 200);
});

t.test('a replica that crashes is restarted with growing backoff, then the deployment is failed', async (t) => {
  const r = await fx.admin.post('/v1/deployments', command('crashy', 'crash'));
  t.equal(r.status, 201);
  const seenPids = new Set<number>();
  const restartAt = new Map<number, number>();
  const t0 = performance.now();
  let last: DeploymentView | null = null;
  await waitFor(async () => {
    last = await fx.admin.deployment('crashy-1');
    pids.note(last);
    const rep = last!.replicas[0]!;
    if (rep.pid !== null) seenPids.add(rep.pid);
    if (!restartAt.has(rep.restarts)) restartAt.set(rep.restarts, performance.now() - t0);
    return last!.state === 'failed' ? last : undefined;
  }, 40_000, 'crashy-1 to fail', 25);
  const view = last! as DeploymentView;
  const rep = view.replicas[0]!;
  t.equal(view.state, 'failed', 'the deployment is failed');
  t.equal(rep.state, 'failed');
  t.equal(rep.restarts, 4, 'restarted 4 times: the 5th crash within the window is final');
  t.same([...restartAt.keys()], [0, 1, 2, 3, 4], 'the restarts count grew one by one');
  t.ok(seenPids.size >= 3, `a new process each time (${seenPids.size} pids seen)`);
  const gaps = [1, 2, 3, 4].map((n) => restartAt.get(n)! - restartAt.get(n - 1)!);
  t.comment(`restart times (ms after deploy): ${[...restartAt.values()].map(Math.round).join(', ')}`);
  t.ok(gaps[3]! > gaps[0]! + 2000, `the backoff grows (gaps ${gaps.map(Math.round).join(', ')} ms)`);
  t.match(rep.last_error, /crashed 5 times within \d+ ms/);
  t.match(rep.last_error, /fatal: CUDA error: device lost/, 'with the server\'s last words');
  t.match(view.last_error, /crashed 5 times/);
  for (const pid of seenPids) t.notOk(pidAlive(pid), `process ${pid} is gone`);
  t.equal((await gwRequest(`${fx.gw.url}/crashy-1/ping`)).status, 503, 'a failed deployment answers 503');

  const port = rep.port;
  t.equal((await fx.admin.del('/v1/deployments/crashy-1?grace_ms=0')).status, 200, 'a failed deployment can be undeployed');
  t.equal(await canBind(port), true, 'its port is released');
});

t.test('a start timeout fails the deployment with the last log lines', async (t) => {
  const t0 = performance.now();
  const r = await fx.admin.post('/v1/deployments?wait=true', command('hung', 'hang', { start_timeout_ms: 1500 }));
  const took = performance.now() - t0;
  t.equal(r.status, 502, '?wait=true answers 502 when the deployment fails');
  t.equal(r.body?.error?.code, 'SLUICE_ERR_DEPLOY_FAILED');
  t.match(r.body?.error?.message, /did not answer GET \/ping with 200 within 1500 ms/);
  t.match(r.body?.error?.message, /loading weights \d+%/, 'the error holds the server\'s last lines');
  t.ok(took >= 1400 && took < 8000, `after the start timeout (${Math.round(took)} ms)`);
  const view = (await fx.admin.deployment('hung-1'))!;
  pids.note(view);
  t.equal(view.state, 'failed');
  t.match(view.replicas[0]!.last_error, /within 1500 ms; last output:\n(.*\n)*\[stdout\] loading weights \d+%/);
  t.match(view.last_error, /loading weights/);
  const logs = await fx.admin.get('/v1/deployments/hung-1/logs');
  t.ok(logs.body.lines.some((l: { line: string }) => /loading weights/.test(l.line)), 'the logs endpoint has them too');
  t.same(processesMatching(new RegExp(`${script} \\d+ hang`)), [], 'the hung server was killed');
  t.equal((await fx.admin.del('/v1/deployments/hung-1')).status, 200);

  const exit = await fx.admin.post('/v1/deployments?wait=true', command('dead', 'exit'));
  t.equal(exit.status, 502, 'a server that exits at start: 502');
  t.match(exit.body?.error?.message, /exited with code 3 before becoming ready/);
  t.match(exit.body?.error?.message, /model weights not found/);
  t.equal((await fx.admin.deployment('dead-1'))!.state, 'failed');
  t.equal((await fx.admin.del('/v1/deployments/dead-1')).status, 200);
});

t.test('undeploy stops the whole process group: SIGTERM, then SIGKILL after the grace', async (t) => {
  const r = await fx.admin.post('/v1/deployments?wait=true', command('forky', 'fork'));
  pids.note(r.body);
  t.equal(r.status, 201);
  const pid = r.body.replicas[0].pid as number;
  const port = r.body.replicas[0].port as number;
  const members = await waitFor(() => (groupPids(pid).length >= 2 ? groupPids(pid) : undefined), 5_000, 'the forked worker');
  t.ok(members.length >= 2, `the server and its worker share a process group (${members.join(', ')})`);
  t.equal(pid, members.includes(pid) ? pid : -1, 'the replica pid leads the group');
  const del = await fx.admin.del('/v1/deployments/forky-1?grace_ms=0');
  t.equal(del.status, 200);
  t.same(del.body, { id: 'forky-1', state: 'stopped' });
  t.same(groupPids(pid), [], 'no process of the group is left when undeploy answers');
  t.equal(await canBind(port), true, 'the port is released');
  t.equal((await fx.admin.get('/v1/deployments/forky-1')).status, 404);
  t.equal((await gwRequest(`${fx.gw.url}/forky-1/ping`)).status, 404);

  const stubborn = await fx.admin.post('/v1/deployments?wait=true', command('stubborn', 'ignore-term'));
  pids.note(stubborn.body);
  const spid = stubborn.body.replicas[0].pid as number;
  const t0 = performance.now();
  t.equal((await fx.admin.del('/v1/deployments/stubborn-1?grace_ms=0')).status, 200);
  const took = performance.now() - t0;
  t.ok(took >= 9_000, `a server that ignores SIGTERM gets its grace period (${Math.round(took)} ms)`);
  t.same(groupPids(spid), [], 'then SIGKILL: nothing is left');
});

t.test('undeploy drains: new requests 404 at once, the stream in flight completes', async (t) => {
  const TOKENS = 25;
  const r = await fx.admin.post('/v1/deployments?wait=true', { model: 'drain', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '100', '--tokens', String(TOKENS)] });
  pids.note(r.body);
  t.equal(r.status, 201);
  const pid = r.body.replicas[0].pid as number;
  const port = r.body.replicas[0].port as number;

  let firstChunk!: () => void;
  const gotFirst = new Promise<void>((resolve) => (firstChunk = resolve));
  let streamEnded = false;
  const stream = gwRequest(`${fx.gw.url}/drain-1/api/generate`, { body: { model: 'demo', prompt: 'tell me a story' }, onChunk: () => firstChunk() })
    .finally(() => (streamEnded = true));
  await gotFirst;

  const t0 = performance.now();
  let delEnded = 0;
  const del = fx.admin.del('/v1/deployments/drain-1?grace_ms=20000').then((x) => {
    delEnded = performance.now();
    return x;
  });
  const draining = await waitFor(async () => ((await fx.admin.deployment('drain-1'))?.state === 'draining' ? true : undefined), 2_000, 'state draining', 10);
  t.ok(draining, 'the deployment shows draining');
  const notFound = await waitFor(async () => {
    const x = await gwRequest(`${fx.gw.url}/drain-1/api/generate`, { body: { model: 'demo', prompt: 'hi', stream: false } });
    return x.status === 404 ? x : undefined;
  }, 2_000, 'a 404 for new requests', 10);
  const notFoundMs = performance.now() - t0;
  t.equal(notFound.json?.error?.code, 'SLUICE_ERR_NO_ROUTE', 'new requests get the no-route 404');
  t.ok(notFoundMs < 1000, `404 within ${Math.round(notFoundMs)} ms of the undeploy call`);
  t.notOk(streamEnded, 'while the stream is still running');
  t.equal((await gwRequest(`${fx.gw.url}/drain/api/tags`)).status, 404, 'the model alias is gone too');

  const s = await stream;
  t.equal(s.status, 200);
  t.ok(s.complete, 'the stream ended normally');
  const lines = s.text.trim().split('\n').map((l) => JSON.parse(l) as { done: boolean; done_reason?: string });
  t.equal(lines.length, TOKENS + 1, 'every token and the final line arrived');
  t.equal(lines[lines.length - 1]!.done, true, 'the last line is done');
  const d = await del;
  t.equal(d.status, 200);
  t.ok(delEnded >= performance.now() - 60_000 && s.chunks.length > 0 && delEnded >= s.chunks[s.chunks.length - 1]!.at - 5, 'undeploy answered after the stream ended');
  t.notOk(pidAlive(pid), 'then the server stopped');
  t.equal(await canBind(port), true, 'and its port was released');
});

t.test('the drain is bounded by ?grace_ms', async (t) => {
  const r = await fx.admin.post('/v1/deployments?wait=true', { model: 'cut', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '100', '--tokens', '100'] });
  pids.note(r.body);
  const pid = r.body.replicas[0].pid as number;
  let firstChunk!: () => void;
  const gotFirst = new Promise<void>((resolve) => (firstChunk = resolve));
  const stream = gwRequest(`${fx.gw.url}/cut-1/api/generate`, { body: { model: 'demo', prompt: 'a long story' }, onChunk: () => firstChunk() });
  await gotFirst;
  const t0 = performance.now();
  const d = await fx.admin.del('/v1/deployments/cut-1?grace_ms=500');
  const took = performance.now() - t0;
  t.equal(d.status, 200);
  t.ok(took >= 450 && took < 4000, `undeploy waited for the grace period only (${Math.round(took)} ms, the stream needed 10 s)`);
  const s = await stream;
  t.notOk(s.text.includes('"done":true'), 'the stream was cut when its server stopped');
  t.notOk(pidAlive(pid), 'the server stopped');
  t.equal((await fx.admin.get('/v1/deployments?grace_ms=x')).status, 400, 'a parameter the listing does not take is refused');
  t.equal((await fx.admin.del('/v1/deployments/nope-1?grace_ms=-1')).status, 404);
  const bad = await fx.admin.post('/v1/deployments?wait=true', { model: 'g', version: '1', runtime: 'sim' });
  pids.note(bad.body);
  const badGrace = await fx.admin.del('/v1/deployments/g-1?grace_ms=soon');
  t.equal(badGrace.status, 400, 'a bad grace_ms: 400');
  t.equal(badGrace.body?.error?.field, 'grace_ms');
  t.equal((await fx.admin.deployment('g-1'))?.state, 'ready', 'and the deployment is untouched');
  t.equal((await fx.admin.del('/v1/deployments/g-1?grace_ms=0')).status, 200);
});

t.test('undeploy of a deployment that is still starting stops its process', async (t) => {
  const r = await fx.admin.post('/v1/deployments', command('early', 'slow', {}, '3000'));
  pids.note(r.body);
  t.equal(r.body.state, 'starting');
  const pid = r.body.replicas[0].pid as number;
  const port = r.body.replicas[0].port as number;
  const t0 = performance.now();
  t.equal((await fx.admin.del('/v1/deployments/early-1?grace_ms=5000')).status, 200);
  t.ok(performance.now() - t0 < 2500, 'at once: nothing is in flight');
  t.same(groupPids(pid), [], 'the starting server was stopped');
  t.equal(await canBind(port), true, 'its port released');
  t.equal(await fx.admin.deployment('early-1'), null);
});

t.test('remote: nothing is spawned, the route goes to the URL', async (t) => {
  const port = await freePort();
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ remote: true, url: req.url }));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const r = await fx.admin.post('/v1/deployments?wait=true', { model: 'far', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port}/base`] });
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.equal(r.body.state, 'ready', 'ready once its first health check (a TCP connect) passed');
  t.match(r.body.replicas[0], { port, pid: null, url: `http://127.0.0.1:${port}/base`, health: { status: 'healthy', check: 'tcp' } });
  const res = await gwRequest(`${fx.gw.url}/far-1/v1/models?x=1`);
  t.equal(res.status, 200);
  t.same(res.json, { remote: true, url: '/base/v1/models?x=1' }, 'the URL\'s path is the prefix');
  t.equal((await fx.admin.del('/v1/deployments/far-1?grace_ms=0')).status, 200);
  t.equal((await gwRequest(`${fx.gw.url}/far-1/v1/models`)).status, 404);
  t.equal((await fetch(`http://127.0.0.1:${port}/still-there`)).status, 200, 'undeploy leaves a remote server alone');
});

t.test('ollama without an ollama binary fails cleanly', async (t) => {
  const r = await fx.admin.post('/v1/deployments?wait=true', { model: 'llama3', version: '8b', runtime: 'ollama', start_timeout_ms: 5000 });
  t.equal(r.status, 502, r.text.slice(0, 300));
  t.match(r.body?.error?.message, /could not be started|ENOENT/);
  const d = (await fx.admin.deployment('llama3-8b'))!;
  t.equal(d.state, 'failed');
  t.equal((await gwRequest(`${fx.gw.url}/llama3-8b/api/tags`)).status, 503);
  const port = d.replicas[0]!.port;
  t.equal((await fx.admin.del('/v1/deployments/llama3-8b')).status, 200);
  t.equal(await canBind(port), true, 'its port released');
});

t.test('a deployment\'s upstream timeouts apply to its route', async (t) => {
  const r = await fx.admin.post('/v1/deployments?wait=true', { model: 'stuck', version: '1', runtime: 'sim', args: ['--hang'], upstream: { headers_timeout_ms: 400 } });
  pids.note(r.body);
  t.equal(r.status, 201);
  const t0 = performance.now();
  const res = await gwRequest(`${fx.gw.url}/stuck-1/api/generate`, { body: { model: 'demo', prompt: 'hi' } });
  const took = performance.now() - t0;
  t.equal(res.status, 504);
  t.equal(res.json?.error?.code, 'SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT');
  t.ok(took >= 350 && took < 3000, `after the deployment's 400 ms, not the default 300 s (${Math.round(took)} ms)`);
  t.equal((await fx.admin.del('/v1/deployments/stuck-1?grace_ms=0')).status, 200);
});

t.test('stopping the gateway stops every model server it started', async (t) => {
  const r = await fx.admin.post('/v1/deployments?wait=true', command('last', 'fork'));
  pids.note(r.body);
  const pid = r.body.replicas[0].pid as number;
  await sleep(100);
  t.equal(await fx.gw.stop(), 0, 'the gateway exits 0 on SIGTERM');
  t.same(groupPids(pid), [], 'the running replica and its worker are gone');
  await assertNoServersLeft(t, pids.pids, RANGE);
});
