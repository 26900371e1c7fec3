// A request that waits before its upstream request (for one of its replica's upstream
// connections, all of upstream.max_connections busy; in the max_inflight_per_replica queue;
// held while its deployment wakes) whose client leaves is dropped then: it never reaches
// the model server, which would start a generation for nobody. Its small body (at the front
// door read before routing, on a path route right after the head) is read while it waits, so
// its socket shows the client leaving; one whose client stays is served. The clients that
// leave send their body a moment after the head, as a client may: the request is already
// waiting when it comes.

import t from 'tap';
import { connect, httpRequest, metric } from '../helpers/http.js';
import { eventually, jsonLogs, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 21950-21954 belong to this file.
let gw: Gateway;
let simUrl: string;

const replicaUrl = async (id: string): Promise<string> =>
  (JSON.parse((await httpRequest(`${gw.adminUrl}/v1/deployments/${id}`)).body) as { replicas: Array<{ url: string }> }).replicas[0]!.url;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 21950, to: 21954 },
    policies: { cache: { enabled: false } },
    deployments: [{
      model: 'one', version: '1', runtime: 'sim', args: ['--ttft-ms', '20', '--token-ms', '50', '--tokens', '30'],
      upstream: { max_connections: 1 },
    }, {
      model: 'queued', version: '1', runtime: 'sim', args: ['--ttft-ms', '20', '--token-ms', '50', '--tokens', '30'],
      policies: { queue: { max_inflight_per_replica: 1 } },
    }, {
      model: 'sleepy', version: '1', runtime: 'sim', args: ['--start-delay-ms', '1000', '--token-ms', '10', '--tokens', '3'],
      // No heartbeats: those read a small body anyway (to see whether it streams).
      scale: { min_replicas: 0, idle_timeout_s: 3600 }, policies: { hold: { heartbeat_ms: 0 } },
    }],
  });
  simUrl = await replicaUrl('one-1');
});
t.teardown(() => gw?.stop());

interface SimStats { requests: number; active: number }
const simStats = async (url = simUrl): Promise<SimStats> => JSON.parse((await httpRequest(`${url}/_sim/stats`)).body) as SimStats;

/** A client that sends the head, its body 100 ms later, and leaves 200 ms after that. */
async function leaver(path: string, model: string): Promise<void> {
  const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const sock = connect(gw.port);
  sock.on('error', () => undefined);
  sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
  await sleep(100);
  sock.write(body);
  await sleep(200);
  sock.destroy();
}

const stream = (path: string, model: string, timeoutMs?: number): ReturnType<typeof httpRequest> =>
  httpRequest(`${gw.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, timeoutMs,
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });

for (const [where, path, model] of [['the front door', '/v1/chat/completions', 'one-1'], ['a path route', '/one-1/v1/chat/completions', 'one']] as const) {
  t.test(`${where}: clients that leave while waiting for a connection never reach the server`, async (t) => {
    await httpRequest(`${simUrl}/_sim/reset`, { method: 'POST' });
    // Holds the only connection for 30 x 50 ms.
    const first = stream(path, model);
    await eventually(async () => ((await simStats()).active === 1 ? true : undefined), 3_000, 'the first stream on the connection');
    const leaving = Array.from({ length: 5 }, () => leaver(path, model));
    const staying = stream(path, model);
    await Promise.all(leaving);
    const done = await first;
    t.match(done.body, /data: \[DONE\]\n\n$/, 'the first stream is whole');
    const served = await staying;
    t.match(served.body, /data: \[DONE\]\n\n$/, 'the client that stayed is served once the connection is free');
    await sleep(200);
    t.equal((await simStats()).requests, 2, 'the server saw the two requests whose clients stayed, none of the five that left');
    const left = jsonLogs(gw).filter((l) => l.msg === 'request' && l.path === path && l.status === 499);
    t.ok(left.length >= 5, `the five that left are logged 499 (${left.length})`);
  });
}

for (const [where, path, model] of [['the front door', '/v1/chat/completions', 'queued-1'], ['a path route', '/queued-1/api/chat', 'queued']] as const) {
  t.test(`${where}: clients that leave while queued (max_inflight_per_replica) never reach the server`, async (t) => {
    const url = await replicaUrl('queued-1');
    await httpRequest(`${url}/_sim/reset`, { method: 'POST' });
    const first = stream(path, model);
    await eventually(async () => ((await simStats(url)).active === 1 ? true : undefined), 3_000, 'the first stream in flight');
    await Promise.all(Array.from({ length: 5 }, () => leaver(path, model)));
    t.equal((await first).status, 200);
    await sleep(300);
    t.equal((await simStats(url)).requests, 1, 'the server saw only the request whose client stayed');
    t.equal(metric((await httpRequest(`${gw.adminUrl}/metrics`)).body, 'sluice_queue_depth', { deployment: 'queued-1' }), 0, 'nothing left queued');
  });
}

t.test('a path route: clients that leave while held (the deployment waking) never reach the server', async (t) => {
  t.equal((await httpRequest(`${gw.adminUrl}/v1/deployments/sleepy-1/hibernate`, { method: 'POST' })).status, 200);
  await Promise.all(Array.from({ length: 5 }, () => leaver('/sleepy-1/v1/chat/completions', 'sleepy')));
  // They woke it: once it is ready, the server has seen none of them.
  const url = await eventually(async () => {
    const d = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/deployments/sleepy-1`)).body) as { state: string; replicas: Array<{ url: string }> };
    return d.state === 'ready' ? d.replicas[0]!.url : undefined;
  }, 10_000, 'sleepy-1 awake');
  await sleep(300);
  t.equal((await simStats(url)).requests, 0, 'no request of a client that left');
  t.equal(metric((await httpRequest(`${gw.adminUrl}/metrics`)).body, 'sluice_queue_depth', { deployment: 'sleepy-1' }), 0, 'nothing left held');
});
