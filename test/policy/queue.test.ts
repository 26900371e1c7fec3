// Bounded queues in front of saturated replicas: with max_inflight_per_replica reached, a
// request waits (FIFO) for a free slot, up to max_length waiting and max_wait_ms each; a
// waiting client that goes away gives its place back at once; and the in-flight limit and
// the queue length hold across worker threads.

import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric, waitMetric } from '../helpers/policy.js';
import { eventually, jsonLogs, replicaPorts, simStats, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18740-18759 belong to this file (test/policy uses 18700-18799).
let gw: Gateway;
let gw2: Gateway | undefined;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18740, to: 18749 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'q', version: '1', runtime: 'sim', policies: { queue: { max_inflight_per_replica: 1, max_length: 1, max_wait_ms: 5_000 } } },
      { model: 'qw', version: '1', runtime: 'sim', policies: { queue: { max_inflight_per_replica: 1, max_length: 5, max_wait_ms: 300 } } },
      { model: 'qf', version: '1', runtime: 'sim', policies: { queue: { max_inflight_per_replica: 1, max_length: 10, max_wait_ms: 10_000 } } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await gw2?.stop();
  await reapServers([], { from: 18740, to: 18759 });
});

async function simPort(g: Gateway, id: string): Promise<number> {
  return (await replicaPorts(g, id))[0]!;
}

async function waitActive(port: number, n: number): Promise<void> {
  await eventually(async () => ((await simStats(port)).active === n ? true : undefined), 5_000, `${n} requests active on the simulator ${port}`);
}

const depth = (g: Gateway, d: string): Promise<number> => gwMetric(g, 'sluice_queue_depth', { deployment: d });

/** A request whose client socket can be destroyed while it waits. */
function abortable(url: string): { destroy(): void; done: Promise<void> } {
  const req = request(url, { agent: false });
  const done = new Promise<void>((resolve) => {
    req.on('error', () => resolve());
    req.on('close', () => resolve());
  });
  req.end();
  return { destroy: () => req.destroy(), done };
}

t.test('at max_inflight the next request waits, then succeeds; a full queue answers 503 QUEUE_FULL', async (t) => {
  const p = await simPort(gw, 'q-1');
  const waitsBefore = await gwMetric(gw, 'sluice_queue_wait_seconds_count', { deployment: 'q-1' });
  const a = httpRequest(`${gw.url}/q-1/_sim/sleep?ms=500`);
  await waitActive(p, 1);
  const bStart = performance.now();
  const b = httpRequest(`${gw.url}/q-1/_sim/sleep?ms=500`).then((r) => ({ r, ms: performance.now() - bStart }));
  t.equal(await waitMetric(gw, 'sluice_queue_depth', { deployment: 'q-1' }, (v) => v === 1), 1, 'sluice_queue_depth is 1 while the second waits');
  t.equal((await simStats(p)).active, 1, 'the replica still has only the first request');

  const c = await httpRequest(`${gw.url}/q-1/_sim/sleep?ms=500`);
  t.equal(c.status, 503, 'a third request finds the queue (max_length 1) full');
  t.equal(errorOf(c)?.code, 'SLUICE_ERR_QUEUE_FULL');
  t.match(c.headers['content-type'], /application\/json/);
  t.ok(Number(c.headers['retry-after']) >= 1, `Retry-After: ${c.headers['retry-after']}`);

  const [ra, rb] = await Promise.all([a, b]);
  t.equal(ra.status, 200);
  t.equal(rb.r.status, 200, 'the queued request succeeded');
  t.ok(rb.ms >= 800, `it waited for the first one (${Math.round(rb.ms)} ms for a 500 ms request)`);
  t.equal(await depth(gw, 'q-1'), 0, 'the queue is empty again');
  t.equal((await simStats(p)).requests, 2, 'the replica saw the two admitted requests, one at a time');
  t.equal(await gwMetric(gw, 'sluice_queue_wait_seconds_count', { deployment: 'q-1' }) - waitsBefore, 1, 'sluice_queue_wait_seconds_count grew by the one queued request');
  t.ok(await gwMetric(gw, 'sluice_queue_wait_seconds_sum', { deployment: 'q-1' }) >= 0.3, 'and its wait (~0.5 s) is in the sum');
});

t.test('waiting longer than max_wait_ms answers 503 QUEUE_TIMEOUT', async (t) => {
  const p = await simPort(gw, 'qw-1');
  const a = httpRequest(`${gw.url}/qw-1/_sim/sleep?ms=1500`);
  await waitActive(p, 1);
  const started = performance.now();
  const b = await httpRequest(`${gw.url}/qw-1/_sim/echo`);
  const ms = performance.now() - started;
  t.equal(b.status, 503);
  t.equal(errorOf(b)?.code, 'SLUICE_ERR_QUEUE_TIMEOUT');
  t.ok(Number(b.headers['retry-after']) >= 1, 'with Retry-After');
  t.ok(ms >= 280 && ms < 1000, `answered after ~max_wait_ms (${Math.round(ms)} ms)`);
  t.equal(await depth(gw, 'qw-1'), 0, 'its place was given back');
  t.equal((await a).status, 200);
  t.equal((await simStats(p)).requests, 1, 'the timed-out request never reached the replica');
});

t.test('a queued client that disconnects frees its place at once', async (t) => {
  const p = await simPort(gw, 'q-1');
  const before = (await simStats(p)).requests;
  const a = httpRequest(`${gw.url}/q-1/_sim/sleep?ms=1000`);
  await waitActive(p, 1);
  const b = abortable(`${gw.url}/q-1/_sim/echo`);
  await waitMetric(gw, 'sluice_queue_depth', { deployment: 'q-1' }, (v) => v === 1);
  const gone = performance.now();
  b.destroy();
  await b.done;
  await waitMetric(gw, 'sluice_queue_depth', { deployment: 'q-1' }, (v) => v === 0, 1_000);
  const freedMs = performance.now() - gone;
  t.ok(freedMs < 300, `the queue depth dropped to 0 within ${Math.round(freedMs)} ms (the first request still runs)`);
  t.equal((await simStats(p)).active, 1, 'the first request is still in flight');
  // max_length is 1: this one can only queue because the place was given back.
  const c = await httpRequest(`${gw.url}/q-1/_sim/echo`);
  t.equal(c.status, 200, 'a new request could queue, and was served after the first');
  t.equal((await a).status, 200);
  t.equal((await simStats(p)).requests - before, 2, 'the disconnected request never reached the replica');
});

/** One keep-alive connection: sends each request (head and body in one write) once the last answer is whole. */
async function keepAlive(port: number, requests: readonly string[], timeoutMs: number): Promise<number[]> {
  const socket = connect({ host: '127.0.0.1', port });
  const statuses: number[] = [];
  try {
    let buf = '';
    for (const req of requests) {
      socket.write(req);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to request ${statuses.length + 1} within ${timeoutMs} ms`)), timeoutMs);
        const onData = (d: Buffer): void => {
          buf += d.toString('latin1');
          const end = buf.indexOf('\r\n\r\n');
          const length = /\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end + 2));
          if (end === -1 || length === null || buf.length < end + 4 + Number(length[1])) return;
          statuses.push(Number(buf.slice(9, 12)));
          buf = buf.slice(end + 4 + Number(length[1]));
          clearTimeout(timer);
          socket.off('data', onData);
          resolve();
        };
        socket.on('data', onData);
      });
    }
    return statuses;
  } finally {
    socket.destroy();
  }
}

const postEcho = (body: string): string => `POST /q-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

t.test('a request that waited with its body: the keep-alive connection reads the next one', async (t) => {
  const p = await simPort(gw, 'q-1');
  const a = httpRequest(`${gw.url}/q-1/_sim/sleep?ms=400`);
  await waitActive(p, 1);
  // Head and body in one packet: the body arrives although the queued request holds its upload back.
  const statuses = await keepAlive(gw.port, [postEcho('{"n":1}'), postEcho('{"n":2}')], 3_000).catch((err: Error) => err.message);
  t.same(statuses, [200, 200], 'both requests answered on the one connection (the second was never read)');
  t.equal((await a).status, 200);
});

t.test('a queued client with a body that disconnects frees its place at once and never reaches the replica', async (t) => {
  const p = await simPort(gw, 'q-1');
  const before = (await simStats(p)).requests;
  const a = httpRequest(`${gw.url}/q-1/_sim/sleep?ms=1000`);
  await waitActive(p, 1);
  const socket = connect({ host: '127.0.0.1', port: gw.port });
  socket.on('error', () => undefined);
  socket.write(postEcho('{"n":3}'));
  await waitMetric(gw, 'sluice_queue_depth', { deployment: 'q-1' }, (v) => v === 1);
  const gone = performance.now();
  socket.destroy();
  await waitMetric(gw, 'sluice_queue_depth', { deployment: 'q-1' }, (v) => v === 0, 1_000);
  t.ok(performance.now() - gone < 300, `the queue depth dropped to 0 within ${Math.round(performance.now() - gone)} ms`);
  t.equal((await a).status, 200);
  await sleep(200);
  t.equal((await simStats(p)).requests - before, 1, 'the disconnected request never reached the replica');
});

t.test('a queued upload is held back and then sent intact', async (t) => {
  const p = await simPort(gw, 'q-1');
  const a = httpRequest(`${gw.url}/q-1/_sim/sleep?ms=500`);
  await waitActive(p, 1);
  const body = randomBytes(512 * 1024);
  const b = httpRequest(`${gw.url}/q-1/_sim/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  await waitMetric(gw, 'sluice_queue_depth', { deployment: 'q-1' }, (v) => v === 1);
  const rb = await b;
  t.equal((await a).status, 200);
  t.equal(rb.status, 200);
  t.same(JSON.parse(rb.body), { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') }, 'the upstream got every byte');
});

t.test('queued requests are served in arrival order', async (t) => {
  const p = await simPort(gw, 'qf-1');
  const a = httpRequest(`${gw.url}/qf-1/_sim/sleep?ms=1000`);
  await waitActive(p, 1);
  const order: number[] = [];
  const pending: Array<Promise<Reply>> = [];
  for (let i = 0; i < 6; i++) {
    pending.push(httpRequest(`${gw.url}/qf-1/_sim/echo/${i}`).then((r) => {
      order.push(i);
      return r;
    }));
    await waitMetric(gw, 'sluice_queue_depth', { deployment: 'qf-1' }, (v) => v === i + 1);
  }
  const replies = await Promise.all(pending);
  t.equal((await a).status, 200);
  t.same(replies.map((r) => r.status), Array(6).fill(200));
  t.same(replies.map((r) => JSON.parse(r.body).url), [0, 1, 2, 3, 4, 5].map((i) => `/_sim/echo/${i}`));
  t.same(order, [0, 1, 2, 3, 4, 5], 'FIFO: answered in the order they queued');
});

t.test('with two workers, max_inflight_per_replica holds across them', async (t) => {
  gw2 = await startGateway({
    ports: { from: 18750, to: 18759 },
    workers: 2,
    log: { level: 'info', access: true },
    deployments: [{ model: 'qx', version: '1', runtime: 'sim', policies: { queue: { max_inflight_per_replica: 2, max_length: 20, max_wait_ms: 20_000 } } }],
  });
  const g = gw2;
  const p = await simPort(g, 'qx-1');
  const N = 12;
  const SLEEP = 300;
  let maxActive = 0;
  let maxDepth = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const [s, d] = await Promise.all([simStats(p), depth(g, 'qx-1')]);
      maxActive = Math.max(maxActive, s.active);
      maxDepth = Math.max(maxDepth, d);
      await sleep(5);
    }
  })();
  const started = performance.now();
  // A new connection each (agent: false): the kernel spreads them over both workers.
  const replies = await Promise.all(Array.from({ length: N }, (_, i) => httpRequest(`${g.url}/qx-1/_sim/sleep?ms=${SLEEP}`, { headers: { 'x-request-id': `qx-${i}` } })));
  const elapsed = performance.now() - started;
  polling = false;
  await poller;
  t.same(replies.map((r) => r.status), Array(N).fill(200), 'all succeed');
  t.ok(maxActive <= 2, `the replica never had more than 2 at once (saw ${maxActive})`);
  t.equal(maxActive, 2, 'and it did run 2 at once');
  // 12 requests of 300 ms, 2 at a time: at least 6 rounds. Per-worker limits (4 at a time) would take ~900 ms.
  t.ok(elapsed >= (N / 2) * SLEEP - 100, `took ${Math.round(elapsed)} ms (>= ${(N / 2) * SLEEP} ms for 2 at a time)`);
  t.ok(maxDepth >= 6, `requests queued across workers (max sluice_queue_depth ${maxDepth})`);
  t.equal(await depth(g, 'qx-1'), 0);
  t.equal(await gwMetric(g, 'sluice_replica_inflight', { deployment: 'qx-1' }), 0, 'no in-flight slot leaked');
  t.ok(await gwMetric(g, 'sluice_queue_wait_seconds_count', { deployment: 'qx-1' }) >= N - 2, 'the waits are counted');
  const logs = await eventually(() => {
    const l = jsonLogs(g).filter((e) => typeof e.request_id === 'string' && e.request_id.startsWith('qx-'));
    return l.length === N ? l : undefined;
  }, 5_000, 'access logs of every request');
  t.same([...new Set(logs.map((e) => e.worker))].sort(), [0, 1], 'both workers served some');
});
