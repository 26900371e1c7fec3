// Circuit breakers per replica, shared by every worker thread: consecutive 5xx, refused
// connections or upstream timeouts open a replica's breaker, its traffic goes to the
// healthy replicas, after reset_timeout_ms exactly one probe is let through, and the
// probe's answer closes or reopens it. 4xx answers and clients that go away never count as failures.

import { request } from 'node:http';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { refusingPort, deploymentView, errorOf, generate, gwMetric, simConfig, simReset, waitMetric } from '../helpers/policy.js';
import { eventually, jsonLogs, replicaPorts, simStats, sleep, startGateway, startSim, type Gateway, type Sim } from '../helpers/procs.js';

// Replica ports 18700-18719 belong to this file (test/policy uses 18700-18799).
const RESET_MS = 2_000;
const HEADERS_TIMEOUT = 300;
let gw: Gateway;
let gw2: Gateway | undefined;
let healthy: Sim;

t.before(async () => {
  healthy = await startSim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3']);
  // Ports 18710-18712 are never bound: replicas that refuse connections.
  const [refusing, deadA, deadB] = [await refusingPort(18710), await refusingPort(18711), await refusingPort(18712)];
  gw = await startGateway({
    ports: { from: 18700, to: 18709 },
    log: { level: 'info', access: true },
    deployments: [
      {
        model: 'b', version: '1', runtime: 'sim', replicas: 2, args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'],
        policies: { breaker: { consecutive_failures: 3, reset_timeout_ms: RESET_MS }, retry: { attempts: 0 } },
      },
      { model: 'c', version: '1', runtime: 'sim', policies: { breaker: { consecutive_failures: 2, reset_timeout_ms: 30_000 } } },
      {
        model: 'e', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'],
        policies: { breaker: { consecutive_failures: 1000, error_threshold_percentage: 50, volume_threshold: 10, window_ms: 60_000, reset_timeout_ms: 30_000 }, retry: { attempts: 0 } },
      },
      {
        // Answers nothing for a minute: every request ends in the headers timeout.
        model: 'h', version: '1', runtime: 'sim', args: ['--ttft-ms', '60000', '--token-ms', '0', '--tokens', '3'],
        upstream: { headers_timeout_ms: HEADERS_TIMEOUT },
        policies: { breaker: { consecutive_failures: 2, reset_timeout_ms: 30_000 }, retry: { attempts: 0 } },
      },
      // These replicas refuse on purpose: health checks off, so that requests reach them and the breaker acts.
      {
        model: 'r', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${refusing}`, healthy.url],
        policies: { breaker: { consecutive_failures: 3, reset_timeout_ms: 30_000 }, retry: { attempts: 2, budget_percent: 100 } },
      },
      {
        model: 'o', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${deadA}`, `http://127.0.0.1:${deadB}`],
        policies: { breaker: { consecutive_failures: 2, reset_timeout_ms: 30_000 }, retry: { attempts: 1, budget_percent: 100 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await gw2?.stop();
  await healthy?.stop();
  await reapServers([], { from: 18700, to: 18719 });
});

async function breakerOf(g: Gateway, id: string, replica: string): Promise<{ metric: number; admin: string | null; opens: number }> {
  const view = await deploymentView(g, id);
  return {
    metric: await gwMetric(g, 'sluice_breaker_state', { deployment: id, replica }),
    admin: view.replicas.find((r) => r.id === replica)?.breaker ?? null,
    opens: await gwMetric(g, 'sluice_breaker_opens_total', { deployment: id, replica }),
  };
}

/** Sends `n` generation requests one after another. */
async function sequential(n: number, deployment = 'b-1'): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let i = 0; i < n; i++) out.push(await generate(gw, deployment));
  return out;
}

/** Starts a request and destroys the client socket after `ms` (no response yet). */
function abortAfter(url: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false });
    req.on('error', () => resolve());
    req.on('response', () => resolve());
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, ms);
  });
}

t.test('the admin view shows the effective policies: the defaults, overridden field by field', async (t) => {
  const view = await deploymentView(gw, 'b-1');
  t.match(view.policies.breaker, { enabled: true, consecutive_failures: 3, reset_timeout_ms: RESET_MS, error_threshold_percentage: 50, volume_threshold: 20 });
  t.match(view.policies.retry, { attempts: 0, budget_percent: 20 });
  t.match(view.policies.queue, { max_inflight_per_replica: 0 });
  t.same(view.replicas.map((r) => r.breaker), ['closed', 'closed'], 'each replica shows its breaker');
  // /metrics shows the same effective settings, one sample per setting.
  const setting = (name: string): Promise<number> => gwMetric(gw, 'sluice_policy_setting', { deployment: 'b-1', setting: name });
  t.equal(await setting('breaker.enabled'), 1, 'sluice_policy_setting: booleans as 1/0');
  t.equal(await setting('breaker.consecutive_failures'), 3, 'the override');
  t.equal(await setting('breaker.reset_timeout_ms'), RESET_MS);
  t.equal(await setting('retry.budget_percent'), 20, 'a default');
  t.equal(await setting('queue.max_inflight_per_replica'), 0);
});

t.test('5xx answers open the breaker; traffic goes to the healthy replica; one probe; recovery', async (t) => {
  const [p0, p1] = (await replicaPorts(gw, 'b-1')) as [number, number];
  await simReset(p0);
  await simReset(p1);
  await simConfig(p0, { status: 500 });

  // Until replica 0 has answered 500 three times (consecutive_failures: 3).
  const seen: Reply[] = [];
  let openedAt = 0;
  for (let i = 0; i < 60 && openedAt === 0; i++) {
    const r = await generate(gw, 'b-1');
    seen.push(r);
    if (seen.filter((x) => x.status === 500).length === 3) openedAt = Date.now();
  }
  t.ok(openedAt > 0, 'replica 0 answered 500 three times');
  t.ok(seen.every((r) => r.status === 200 || r.status === 500), 'every answer came from a replica (200 or its 500)');
  let b0 = await breakerOf(gw, 'b-1', 'b-1/0');
  t.equal(b0.metric, 1, 'sluice_breaker_state of replica 0 is 1 (open)');
  t.equal(b0.admin, 'open', 'the admin view shows breaker: "open"');
  t.equal(b0.opens, 1, 'sluice_breaker_opens_total is 1');
  const b1 = await breakerOf(gw, 'b-1', 'b-1/1');
  t.equal(b1.metric, 0, 'the healthy replica stays closed');
  t.equal(b1.admin, 'closed');

  // While open, replica 0 gets nothing.
  const during = await sequential(20);
  t.ok(Date.now() - openedAt < RESET_MS, 'the requests ran inside the reset timeout (else the test proves nothing)');
  t.same(during.map((r) => r.status), Array(20).fill(200), 'all 20 succeed on the healthy replica');
  t.equal((await simStats(p0)).requests, 3, 'replica 0 received exactly the 3 failing requests');

  // After reset_timeout_ms exactly one probe goes to it; it fails again: open again.
  await sleep(Math.max(0, openedAt + RESET_MS + 100 - Date.now()));
  const afterReset = await sequential(20);
  t.equal((await simStats(p0)).requests, 4, 'exactly one probe reached replica 0 after the reset timeout');
  t.equal(afterReset.filter((r) => r.status === 500).length, 1, 'the client of the probe saw its 500; the rest were served');
  const reopenedAt = Date.now();
  b0 = await breakerOf(gw, 'b-1', 'b-1/0');
  t.equal(b0.metric, 1, 'the failed probe reopened the breaker');
  t.equal(b0.opens, 2, 'sluice_breaker_opens_total counts the second opening');

  // The replica recovers, slowly: the probe is in flight for a second (half-open), during
  // which no other request goes to it; its success closes the breaker.
  await simConfig(p0, { status: 0, ttft_ms: 1000 });
  await sleep(Math.max(0, reopenedAt + RESET_MS + 100 - Date.now()));
  const pending: Array<Promise<Reply>> = [];
  for (let i = 0; i < 8; i++) {
    pending.push(generate(gw, 'b-1'));
    await sleep(40);
  }
  const half = await breakerOf(gw, 'b-1', 'b-1/0');
  t.equal(half.metric, 2, 'sluice_breaker_state is 2 (half-open) while the probe is out');
  t.equal(half.admin, 'half-open', 'the admin view shows breaker: "half-open"');
  const probeTime = await Promise.all(pending);
  t.same(probeTime.map((r) => r.status), Array(8).fill(200), 'all 8 succeed');
  t.equal((await simStats(p0)).requests, 5, 'only the probe went to replica 0 while half-open');
  b0 = await breakerOf(gw, 'b-1', 'b-1/0');
  t.equal(b0.metric, 0, 'the successful probe closed the breaker');
  t.equal(b0.admin, 'closed');

  // Traffic returns to replica 0.
  await simConfig(p0, { ttft_ms: 0 });
  const back = await sequential(30);
  t.ok(back.every((r) => r.status === 200));
  const got = (await simStats(p0)).requests - 5;
  t.ok(got >= 5, `replica 0 takes traffic again (${got} of 30)`);
});

t.test('4xx answers never open a breaker', async (t) => {
  const [p0] = (await replicaPorts(gw, 'b-1')) as [number, number];
  await simReset(p0);
  await simConfig(p0, { status: 404 });
  const opensBefore = (await breakerOf(gw, 'b-1', 'b-1/0')).opens;
  const replies = await sequential(40);
  await simConfig(p0, { status: 0 });
  const got404 = replies.filter((r) => r.status === 404).length;
  t.ok(got404 >= 6, `replica 0 answered 404 ${got404} times (at least twice consecutive_failures)`);
  t.equal((await simStats(p0)).requests, got404, 'and kept receiving requests');
  const b0 = await breakerOf(gw, 'b-1', 'b-1/0');
  t.equal(b0.metric, 0, 'the breaker stays closed');
  t.equal(b0.opens, opensBefore, 'and never opened');
});

t.test('a client that goes away never counts against the replica', async (t) => {
  const [p] = (await replicaPorts(gw, 'c-1')) as [number];
  await simReset(p);
  for (let i = 0; i < 5; i++) await abortAfter(`${gw.url}/c-1/_sim/sleep?ms=5000`, 100);
  await eventually(async () => ((await simStats(p)).cancelled === 5 ? true : undefined), 5_000, 'the 5 upstream requests to be cancelled');
  const b = await breakerOf(gw, 'c-1', 'c-1/0');
  t.equal(b.metric, 0, 'five aborts (consecutive_failures: 2) leave the breaker closed');
  t.equal(b.opens, 0);
  const r = await httpRequest(`${gw.url}/c-1/_sim/echo`);
  t.equal(r.status, 200, 'the replica still gets requests');
});

t.test('a replica refusing connections is out after its first refusal; with retries nobody sees an error', async (t) => {
  await healthy.reset();
  const retriesBefore = await gwMetric(gw, 'sluice_retries_total', { deployment: 'r-1' });
  const replies: Reply[] = [];
  for (let i = 0; i < 40; i++) replies.push(await httpRequest(`${gw.url}/r-1/_sim/echo`));
  t.same(replies.map((r) => r.status), Array(40).fill(200), 'all 40 requests succeed');
  t.equal((await healthy.stats()).requests, 40, 'the healthy replica served all 40');
  const retries = (await gwMetric(gw, 'sluice_retries_total', { deployment: 'r-1' })) - retriesBefore;
  t.equal(retries, 1, 'only the first request tried the refusing replica: a refused connect ejects at once');
  const b = await breakerOf(gw, 'r-1', 'r-1/0');
  t.equal(b.metric, 1, 'the refusing replica is ejected (breaker open)');
  t.equal(b.admin, 'open');
  t.equal((await breakerOf(gw, 'r-1', 'r-1/1')).metric, 0, 'the healthy one stays closed');
});

t.test('upstream timeouts count as failures: a replica that answers too late is ejected', async (t) => {
  const [p] = (await replicaPorts(gw, 'h-1')) as [number];
  await simReset(p);
  const timed = async (): Promise<{ r: Reply; ms: number }> => {
    const started = performance.now();
    const r = await generate(gw, 'h-1', { timeoutMs: 10_000 });
    return { r, ms: performance.now() - started };
  };
  let b = await breakerOf(gw, 'h-1', 'h-1/0');
  t.same([b.metric, b.admin, b.opens], [0, 'closed', 0], 'closed at first');

  const first = await timed();
  t.equal(first.r.status, 504, 'the first request times out: 504');
  t.equal(errorOf(first.r)?.code, 'SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT');
  t.ok(first.ms >= HEADERS_TIMEOUT - 20 && first.ms < HEADERS_TIMEOUT + 500, `after ~${HEADERS_TIMEOUT} ms (${Math.round(first.ms)} ms)`);
  b = await breakerOf(gw, 'h-1', 'h-1/0');
  t.same([b.metric, b.admin, b.opens], [0, 'closed', 0], 'one timeout of consecutive_failures 2: still closed');

  const second = await timed();
  t.equal(second.r.status, 504, 'the second one too');
  t.equal(errorOf(second.r)?.code, 'SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT');
  b = await breakerOf(gw, 'h-1', 'h-1/0');
  t.equal(b.metric, 1, 'sluice_breaker_state is 1 (open) after 2 consecutive timeouts');
  t.equal(b.admin, 'open', 'the admin view shows breaker: "open"');
  t.equal(b.opens, 1, 'sluice_breaker_opens_total is 1');

  const third = await timed();
  t.equal(third.r.status, 503, 'then the replica gets no more requests: 503');
  t.equal(errorOf(third.r)?.code, 'SLUICE_ERR_CIRCUIT_OPEN');
  t.ok(third.ms < HEADERS_TIMEOUT, `refused at once, without waiting for the replica (${Math.round(third.ms)} ms)`);
  const stats = await eventually(async () => {
    const s = await simStats(p);
    return s.cancelled >= 2 ? s : undefined;
  }, 5_000, 'the 2 timed-out upstream requests to be cancelled');
  t.equal(stats.requests, 2, 'the replica received exactly the 2 requests that timed out');
  t.equal(stats.cancelled, 2, 'and the gateway aborted both');
});

t.test('every replica open: 503 SLUICE_ERR_CIRCUIT_OPEN with Retry-After', async (t) => {
  const replies: Reply[] = [];
  for (let i = 0; i < 6; i++) replies.push(await httpRequest(`${gw.url}/o-1/_sim/echo`));
  const first = replies.findIndex((r) => r.status === 503);
  t.ok(first >= 1 && first <= 3, `the first requests fail with 502 until both breakers open (first 503 at #${first})`);
  t.ok(replies.slice(0, first).every((r) => r.status === 502 && errorOf(r)?.code === 'SLUICE_ERR_UPSTREAM_CONNECT'));
  for (const r of replies.slice(first)) {
    t.equal(r.status, 503);
    t.match(r.headers['content-type'], /application\/json/);
    t.equal(errorOf(r)?.code, 'SLUICE_ERR_CIRCUIT_OPEN');
    t.equal(errorOf(r)?.request_id, r.headers['x-request-id'], 'the error names the request id');
    const ra = Number(r.headers['retry-after']);
    t.ok(Number.isInteger(ra) && ra >= 1 && ra <= 30, `Retry-After ${r.headers['retry-after']} is when the first probe is due (<= reset_timeout 30 s)`);
  }
  t.equal(await gwMetric(gw, 'sluice_breaker_state', { deployment: 'o-1' }), 2, 'both replicas show state 1 (sum 2)');
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'o-1', code: '503' }), replies.length - first, 'the 503s are counted for the deployment');
});

t.test('two workers share one breaker: the failure count does not double', async (t) => {
  gw2 = await startGateway({
    ports: { from: 18715, to: 18719 },
    workers: 2,
    log: { level: 'info', access: true },
    deployments: [{
      model: 'w', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3', '--status', '500'],
      policies: { breaker: { consecutive_failures: 4, reset_timeout_ms: RESET_MS }, retry: { attempts: 0 } },
    }],
  });
  const g = gw2;
  const [p] = (await replicaPorts(g, 'w-1')) as [number];
  const replies: Reply[] = [];
  const started = Date.now();
  // A new connection each time (agent: false), so the kernel spreads them over both workers.
  for (let i = 0; i < 30; i++) replies.push(await generate(g, 'w-1', { headers: { 'x-request-id': `w2-${i}` } }));
  t.same(replies.slice(0, 4).map((r) => r.status), [500, 500, 500, 500], 'the first 4 reach the replica');
  t.ok(replies.slice(4).every((r) => r.status === 503 && errorOf(r)?.code === 'SLUICE_ERR_CIRCUIT_OPEN'), 'then every worker refuses: circuit open');
  t.equal((await simStats(p)).requests, 4, 'the replica saw exactly consecutive_failures requests, not 4 per worker');
  const logs = await eventually(() => {
    const l = jsonLogs(g).filter((e) => typeof e.request_id === 'string' && e.request_id.startsWith('w2-'));
    return l.length === 30 ? l : undefined;
  }, 5_000, 'access logs of the 30 requests');
  const workersRefusing = new Set(logs.filter((e) => e.status === 503).map((e) => e.worker));
  t.ok(Date.now() - started < RESET_MS, 'all within the reset timeout (else the count proves nothing)');
  t.same([...workersRefusing].sort(), [0, 1], 'both workers refused requests with the one shared breaker');
  t.equal(await waitMetric(g, 'sluice_breaker_state', { deployment: 'w-1' }, (v) => v === 1), 1);

  // After the reset timeout, 20 concurrent requests over both workers: one probe in all.
  await sleep(RESET_MS + 200);
  const burst = await Promise.all(Array.from({ length: 20 }, () => generate(g, 'w-1')));
  t.equal((await simStats(p)).requests, 5, 'exactly one probe reached the replica, across both workers');
  t.same(burst.map((r) => r.status).sort(), [...Array(19).fill(503), 500].sort(), 'the probe got the 500; the others were refused');
});

t.test('the error percentage over the window opens a breaker once the volume is reached', async (t) => {
  const [p] = (await replicaPorts(gw, 'e-1')) as [number];
  for (let i = 0; i < 5; i++) t.equal((await generate(gw, 'e-1')).status, 200);
  await simConfig(p, { status: 500 });
  const failing: number[] = [];
  for (let i = 0; i < 4; i++) failing.push((await generate(gw, 'e-1')).status);
  t.same(failing, [500, 500, 500, 500], '4 failures of 9: under the volume threshold (10), still closed');
  t.equal(await gwMetric(gw, 'sluice_breaker_state', { deployment: 'e-1' }), 0);
  t.equal((await generate(gw, 'e-1')).status, 500, 'the 10th request: 5 of 10 failed (50%)');
  t.equal(await gwMetric(gw, 'sluice_breaker_state', { deployment: 'e-1' }), 1, 'the breaker opened on the error percentage');
  const r = await generate(gw, 'e-1');
  t.equal(r.status, 503);
  t.equal(errorOf(r)?.code, 'SLUICE_ERR_CIRCUIT_OPEN');
  t.equal((await simStats(p)).requests, 10, 'the replica got the 10 requests and no more');
});
