// Retries on another replica: only when safe (the connection was refused or reset before
// any response byte), with the request body replayed byte for byte when it was small
// enough to keep, never once the response has started, and within a retry budget, which a
// refused connection (it never reached a model) does not spend. A refused connect ejects
// its replica at once.
//
// Each deployment pairs a replica that refuses connections (a closed port), resets them
// (a server that answers the request bytes with RST) or crashes with a healthy simulator.
// A slow request held on the healthy one makes least-outstanding-requests pick the other
// first, so every request below meets the failure deterministically.

import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric, holdReplica, pool, refusingPort, resettingServer, type ResettingServer } from '../helpers/policy.js';
import { eventually, startGateway, startSim, type Gateway, type Sim } from '../helpers/procs.js';

// Replica ports 18720-18739 belong to this file (test/policy uses 18700-18799); every
// replica here is remote, so none is allocated: 18720 and 18721 stay closed.
const REPLAY_MAX = 16 * 1024;
let gw: Gateway;
let simA: Sim;
let simB: Sim;
let simC: Sim;
let crashy: Sim;
let simD: Sim;
let simE: Sim;
let resetD: ResettingServer;
let resetE: ResettingServer;
let resetB: ResettingServer;
let simF: Sim;
const holds: Array<() => void> = [];

t.before(async () => {
  [simA, simB, simC, crashy] = await Promise.all([
    startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']),
    startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']),
    startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']),
    startSim(['--ttft-ms', '0', '--token-ms', '30', '--tokens', '20', '--crash-after', '3']),
  ]);
  [simD, simE, simF, resetD, resetE, resetB] = await Promise.all([
    startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']),
    startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']),
    startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']),
    resettingServer(),
    resettingServer(),
    resettingServer(),
  ]);
  // Never bound (this file's gateway allocates no port): replicas that refuse connections.
  const [refusedA, refusedF] = [await refusingPort(18720), await refusingPort(18721)];
  const noBreaker = { enabled: false };
  gw = await startGateway({
    ports: { from: 18722, to: 18739 },
    log: { level: 'info', access: false },
    deployments: [
      // Health checks off: the misbehaving replicas must stay routed for the retries to be seen.
      {
        model: 'rt', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${refusedA}`, simA.url],
        policies: { breaker: noBreaker, retry: { attempts: 2, budget_percent: 100, replay_max_bytes: REPLAY_MAX } },
      },
      {
        model: 'bg', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [resetB.url, simB.url],
        policies: { breaker: noBreaker, retry: { attempts: 1, budget_percent: 10, budget_window_ms: 600_000 } },
      },
      {
        model: 'cr', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [crashy.url, simC.url],
        policies: { breaker: noBreaker, retry: { attempts: 2, budget_percent: 100 } },
      },
      {
        model: 'rs', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [resetD.url, simD.url],
        policies: { breaker: noBreaker, retry: { attempts: 2, budget_percent: 100, replay_max_bytes: REPLAY_MAX } },
      },
      {
        model: 'rz', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [resetE.url, simE.url],
        policies: { breaker: noBreaker, retry: { attempts: 0 } },
      },
      {
        // The default breaker, and no retry budget at all: refusals must not need one.
        model: 'ej', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${refusedF}`, simF.url],
        policies: { breaker: { reset_timeout_ms: 250 }, retry: { attempts: 2, budget_percent: 0 } },
      },
    ],
  });
});

t.teardown(async () => {
  for (const release of holds) release();
  await gw?.stop();
  await Promise.all([simA, simB, simC, crashy, simD, simE, simF].map((s) => s?.stop()));
  await Promise.all([resetD?.close(), resetE?.close(), resetB?.close()]);
});

const retries = (d: string): Promise<number> => gwMetric(gw, 'sluice_retries_total', { deployment: d });
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A chunked upload (no Content-Length), written in `pieces`. */
function chunkedUpload(url: string, pieces: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    let i = 0;
    const next = (): void => {
      if (i === pieces.length) {
        req.end();
        return;
      }
      req.write(pieces[i++]!);
      setTimeout(next, 10);
    };
    next();
  });
}

/** A Content-Length upload whose first `first` bytes go at once and the rest after `pauseMs`. */
function slowUpload(url: string, body: Buffer, first: number, pauseMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    // The gateway may answer and close before the rest is written: that is not a failure here.
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    req.write(body.subarray(0, first));
    setTimeout(() => req.end(body.subarray(first)), pauseMs);
  });
}

t.test('a refused connection is retried on another replica: 200, and sluice_retries_total grows', async (t) => {
  holds.push(await holdReplica(gw, 'rt-1', simA));
  const before = await retries('rt-1');
  const errBefore = await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'rt-1', code: 'SLUICE_ERR_UPSTREAM_CONNECT' }, { absent: 0 });
  const reqsBefore = (await simA.stats()).requests;
  const replies: Reply[] = [];
  for (let i = 0; i < 10; i++) replies.push(await httpRequest(`${gw.url}/rt-1/_sim/echo`));
  t.same(replies.map((r) => r.status), Array(10).fill(200), 'all 10 succeed');
  t.equal((await retries('rt-1')) - before, 10, 'each one was refused first and retried once');
  t.equal(await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'rt-1', code: 'SLUICE_ERR_UPSTREAM_CONNECT' }) - errBefore, 10, 'the refusals are counted as upstream errors');
  t.equal((await simA.stats()).requests - reqsBefore, 10, 'the healthy replica got each request exactly once');
});

t.test('a connection reset before any response byte is retried on another replica: 200', async (t) => {
  holds.push(await holdReplica(gw, 'rs-1', simD));
  const code = 'SLUICE_ERR_UPSTREAM_RESET';
  const before = await retries('rs-1');
  const errBefore = await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'rs-1', code }, { absent: 0 });
  const seenBefore = resetD.seen;
  const reqsBefore = (await simD.stats()).requests;
  const replies: Reply[] = [];
  for (let i = 0; i < 10; i++) replies.push(await httpRequest(`${gw.url}/rs-1/_sim/echo`));
  // A POST: the body the reset connection took is replayed to the healthy replica.
  const body = randomBytes(5000);
  const upload = await httpRequest(`${gw.url}/rs-1/_sim/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  t.same(replies.map((r) => r.status), Array(10).fill(200), 'all 10 GETs succeed');
  t.equal(upload.status, 200, 'the POST succeeds');
  t.same(JSON.parse(upload.body), { bytes: body.length, sha256: sha256(body) }, 'with its body intact upstream');
  t.equal(resetD.seen - seenBefore, 11, 'the resetting replica received each request first (and reset it)');
  t.equal((await simD.stats()).requests - reqsBefore, 11, 'the healthy replica then got each exactly once');
  t.equal((await retries('rs-1')) - before, 11, 'each one was retried once');
  t.equal(await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'rs-1', code }) - errBefore, 11, 'the resets are counted as SLUICE_ERR_UPSTREAM_RESET');
});

t.test('with retry attempts 0, a connection reset before any response byte is a 502', async (t) => {
  holds.push(await holdReplica(gw, 'rz-1', simE));
  const before = await retries('rz-1');
  const seenBefore = resetE.seen;
  const reqsBefore = (await simE.stats()).requests;
  const replies: Reply[] = [];
  for (let i = 0; i < 5; i++) replies.push(await httpRequest(`${gw.url}/rz-1/_sim/echo`));
  t.same(replies.map((r) => r.status), Array(5).fill(502), 'all 5 fail with 502');
  t.same(replies.map((r) => errorOf(r)?.code), Array(5).fill('SLUICE_ERR_UPSTREAM_RESET'), 'SLUICE_ERR_UPSTREAM_RESET');
  t.ok(replies.every((r) => errorOf(r)?.request_id === r.headers['x-request-id']), 'each error names its request id');
  t.equal(resetE.seen - seenBefore, 5, 'each reached the resetting replica');
  t.equal((await simE.stats()).requests - reqsBefore, 0, 'none went on to the healthy replica');
  t.equal((await retries('rz-1')) - before, 0, 'no retry counted');
});

t.test('a small POST body is replayed intact on the retry', async (t) => {
  const before = await retries('rt-1');
  for (let i = 0; i < 5; i++) {
    const body = randomBytes(10 * 1024 + i);
    const r = await httpRequest(`${gw.url}/rt-1/_sim/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    t.equal(r.status, 200);
    t.same(JSON.parse(r.body), { bytes: body.length, sha256: sha256(body) }, `body ${i}: same bytes and sha256 upstream`);
  }
  // A chunked upload arriving in pieces, some of them after the first connection failed.
  const pieces = [randomBytes(3000), randomBytes(5000), randomBytes(4000)];
  const whole = Buffer.concat(pieces);
  const c = await chunkedUpload(`${gw.url}/rt-1/_sim/upload`, pieces);
  t.equal(c.status, 200);
  t.same(JSON.parse(c.body), { bytes: whole.length, sha256: sha256(whole) }, 'a chunked body is replayed intact too');
  t.equal((await retries('rt-1')) - before, 6, 'all six were retries');
});

t.test('a body over replay_max_bytes is not retried: 502', async (t) => {
  const before = await retries('rt-1');
  const uploadsBefore = (await simA.stats()).requests;
  const body = randomBytes(REPLAY_MAX * 4);
  for (let i = 0; i < 3; i++) {
    const r = await httpRequest(`${gw.url}/rt-1/_sim/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    t.equal(r.status, 502, `upload ${i} of ${body.length} bytes fails with 502`);
    t.equal(errorOf(r)?.code, 'SLUICE_ERR_UPSTREAM_CONNECT');
  }
  // The same size announced by Content-Length but sent slowly: the first connection is
  // refused while only a small part has arrived. The body is still over the limit, so the
  // request is not retried either (the outcome must not depend on the client's speed).
  const slow = await slowUpload(`${gw.url}/rt-1/_sim/upload`, body, 1024, 150);
  t.equal(slow.status, 502, 'a slow upload over the limit fails with 502 as well');
  t.equal(errorOf({ body: slow.body } as Reply)?.code, 'SLUICE_ERR_UPSTREAM_CONNECT');
  t.equal((await retries('rt-1')) - before, 0, 'no retry');
  t.equal((await simA.stats()).requests - uploadsBefore, 0, 'the healthy replica never saw them');
  // A body at the limit is still replayed.
  const small = randomBytes(REPLAY_MAX);
  const ok = await httpRequest(`${gw.url}/rt-1/_sim/upload`, { method: 'POST', body: small, headers: { 'content-type': 'application/octet-stream' } });
  t.equal(ok.status, 200, 'a body of exactly replay_max_bytes is retried');
  t.equal(JSON.parse(ok.body).sha256, sha256(small));
});

t.test('never retried once the response has started: a crash mid-stream ends the stream with an error line', async (t) => {
  holds.push(await holdReplica(gw, 'cr-1', simC));
  const before = await retries('cr-1');
  const r = await httpRequest(`${gw.url}/cr-1/api/generate`, { method: 'POST', body: '{"model":"demo","prompt":"hi","stream":true}' });
  t.equal(r.status, 200, 'the stream had started (200)');
  const lines = r.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  t.equal(lines.filter((l) => typeof l.response === 'string').length, 3, 'the 3 tokens produced before the crash arrived');
  t.equal(lines.at(-1)?.error?.code, 'SLUICE_ERR_UPSTREAM_RESET', 'the last line is the gateway error');
  t.ok(r.complete, 'the stream ended cleanly (chunked terminator), not cut');
  const crashes = await eventually(() => {
    const c = crashy.stderr.filter((l) => l.includes('"event":"crash"'));
    return crashy.child.exitCode !== null ? c : undefined;
  }, 5_000, 'the crashing simulator to exit');
  t.equal(crashes.length, 1, 'the crashing replica got one request');
  t.equal((await simC.stats()).requests, 1, 'the other replica got none (only the held request)');
  t.equal((await retries('cr-1')) - before, 0, 'no retry counted');
});

t.test('the retry budget stops retries when most requests fail', async (t) => {
  holds.push(await holdReplica(gw, 'bg-1', simB));
  const before = await retries('bg-1');
  const N = 100;
  const replies: Reply[] = [];
  for (let i = 0; i < N; i++) replies.push(await httpRequest(`${gw.url}/bg-1/_sim/echo`));
  const ok = replies.filter((r) => r.status === 200).length;
  const failed = replies.filter((r) => r.status === 502 && errorOf(r)?.code === 'SLUICE_ERR_UPSTREAM_RESET').length;
  const retried = (await retries('bg-1')) - before;
  t.equal(ok + failed, N, 'each request either was retried onto the healthy replica or failed with 502');
  t.equal(retried, ok, 'every success is a counted retry');
  // budget_percent 10 of ~100 requests (with a floor of a few retries for quiet deployments).
  t.ok(retried >= 2 && retried <= 11, `retries stopped at ${retried} of ${N} failing requests`);
  t.ok(replies.slice(-30).filter((r) => r.status === 200).length <= 4, 'the last 30 are mostly not retried');
});

t.test('one dead replica (connection refused) and one live: 1,000 requests, 0 errors, the dead one ejected at its first refusal', async (t) => {
  const before = await retries('ej-1');
  const liveBefore = (await simF.stats()).requests;
  const replies = await pool(1_000, 8, () => httpRequest(`${gw.url}/ej-1/_sim/echo`));
  const statuses = new Map<number, number>();
  for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  t.same([...statuses], [[200, 1_000]], 'every request answered 200, with no retry budget');
  t.equal((await simF.stats()).requests - liveBefore, 1_000, 'the live replica served each request once');
  const refusals = (await retries('ej-1')) - before;
  t.ok(refusals >= 1, 'the dead replica was tried');
  // Ejected at once, then probed every reset_timeout (250 ms): a handful of refusals, not
  // the ~500 a random pick between two replicas would meet.
  t.ok(refusals < 60, `${refusals} requests met the dead replica`);
  const dead = (await gwMetric(gw, 'sluice_breaker_opens_total', { deployment: 'ej-1', replica: 'ej-1/0' }));
  t.ok(dead >= 1, 'the dead replica\'s breaker opened');
  t.equal(await gwMetric(gw, 'sluice_breaker_state', { deployment: 'ej-1', replica: 'ej-1/1' }), 0, 'the live one stays closed');
});
