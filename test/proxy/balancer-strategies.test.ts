// Balancing strategies per deployment (policies.balancer.strategy), through the real
// gateway: round_robin takes each replica in turn; weighted splits by the replicas' weights;
// lowest_latency prefers the replica that answers first and still probes the slower one;
// failover keeps to the first priority tier while it can take requests; lowest_cost to the
// cheapest replicas.

import t, { type Test } from 'tap';
import { httpRequest } from '../helpers/http.js';
import { replicaPorts, startGateway, startSim, type Gateway, type Sim } from '../helpers/procs.js';

// Replica ports 18310-18339 belong to this file.
let gw: Gateway;
let fast: Sim;
let slow: Sim;
/** Three alike replicas (a, b, c) for the ranked strategies. */
let sims: Sim[];

t.before(async () => {
  // One token: an answer takes about the time to first token.
  fast = await startSim(['--ttft-ms', '2', '--tokens', '1']);
  slow = await startSim(['--ttft-ms', '60', '--tokens', '1']);
  sims = await Promise.all([0, 1, 2].map(() => startSimOn(0)));
  const [a, b, c] = sims.map((s) => s.url);
  const remote = { runtime: 'remote', health_check: { enabled: false } };
  gw = await startGateway({
    ports: { from: 18310, to: 18339 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'rr', version: '1', runtime: 'sim', replicas: 3, policies: { balancer: { strategy: 'round_robin' } } },
      {
        model: 'll', version: '1', runtime: 'remote', urls: [slow.url, fast.url], health_check: { enabled: false },
        policies: { balancer: { strategy: 'lowest_latency', latency_buffer: 0.2, probe_interval_ms: 300 }, retry: { attempts: 0 } },
      },
      { model: 'wt', version: '1', ...remote, urls: [{ url: a, weight: 3 }, b], policies: { balancer: { strategy: 'weighted' } } },
      // Listed out of order: the tiers come from priority, not from the position.
      {
        model: 'fo', version: '1', ...remote, urls: [{ url: c, priority: 2 }, { url: a, priority: 0 }, { url: b, priority: 1 }],
        policies: { balancer: { strategy: 'failover' }, breaker: { consecutive_failures: 3, reset_timeout_ms: 60_000 }, retry: { attempts: 2 } },
      },
      { model: 'fo', version: '2', ...remote, urls: [{ url: c, priority: 2 }, { url: a, priority: 0 }, { url: b, priority: 1 }], policies: { balancer: { strategy: 'failover' }, queue: { max_inflight_per_replica: 1 } } },
      { model: 'lc', version: '1', ...remote, urls: [{ url: a, cost: 1 }, { url: b, cost: 5 }, { url: c, cost: 1 }], policies: { balancer: { strategy: 'lowest_cost' } } },
      { model: 'lc', version: '2', ...remote, urls: [{ url: a, cost: 1 }, { url: b, cost: 5 }, { url: c, cost: 1 }], policies: { balancer: { strategy: 'lowest_cost' }, queue: { max_inflight_per_replica: 1 } } },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  await fast?.stop();
  await slow?.stop();
  await Promise.all((sims ?? []).map((s) => s.stop()));
});

function startSimOn(port: number): Promise<Sim> {
  return startSim(['--port', String(port), '--ttft-ms', '2', '--tokens', '1']);
}

function generate(path: string): Promise<{ status: number; body: string }> {
  return httpRequest(`${gw.url}${path}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', prompt: 'hi', stream: false }), headers: { 'content-type': 'application/json' } });
}

/** Requests each of the three sims received since the last reset. */
async function served(): Promise<number[]> {
  return Promise.all(sims.map(async (s) => (await s.stats()).requests));
}

async function resetSims(): Promise<void> {
  await Promise.all(sims.map((s) => s.reset()));
}

/** Three requests at once to a deployment whose replicas take one each: one per replica. */
async function threeAtOnce(t: Test, path: string): Promise<void> {
  await resetSims();
  await Promise.all(sims.map((s) => s.configure({ ttft_ms: 400 })));
  try {
    const statuses: number[] = [];
    // Started 50 ms apart, so that each pick sees the ones before it in flight.
    await Promise.all([0, 1, 2].map(async (i) => {
      await new Promise((r) => setTimeout(r, i * 50));
      statuses.push((await generate(path)).status);
    }));
    t.same(statuses, [200, 200, 200]);
    t.same(await served(), [1, 1, 1], 'each replica took one: a full one passes the request on instead of queueing it');
  } finally {
    await Promise.all(sims.map((s) => s.configure({ ttft_ms: 2 })));
  }
}

t.test('round_robin sends each request to the next replica', async (t) => {
  const ports = await replicaPorts(gw, 'rr-1');
  t.equal(ports.length, 3);
  const seen: number[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await httpRequest(`${gw.url}/rr-1/_sim/echo`);
    t.equal(r.status, 200);
    seen.push(Number(String((JSON.parse(r.body) as { headers: { host: string } }).headers.host).split(':')[1]));
  }
  for (const p of ports) t.equal(seen.filter((x) => x === p).length, 10, `replica ${p} got 10 of 30`);
  // In turn: no replica twice in a row, and every window of three holds all three.
  for (let i = 0; i + 3 <= seen.length; i++) t.equal(new Set(seen.slice(i, i + 3)).size, 3, `requests ${i}-${i + 2} went to three replicas`);
});

t.test('lowest_latency prefers the faster replica and still probes the slower', async (t) => {
  await fast.reset();
  await slow.reset();
  const started = Date.now();
  let n = 0;
  // About 2.5 s of sequential requests: the slower replica's average is 30x the faster's.
  while (Date.now() - started < 2_500) {
    const r = await httpRequest(`${gw.url}/ll-1/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', prompt: 'hi', stream: false }), headers: { 'content-type': 'application/json' } });
    if (r.status !== 200) {
      t.fail(`${r.status} ${r.body}`);
      break;
    }
    n++;
  }
  const toFast = (await fast.stats()).requests;
  const toSlow = (await slow.stats()).requests;
  t.equal(toFast + toSlow, n, 'every request reached one of the two');
  t.ok(toFast >= 0.8 * n, `the faster replica got ${toFast} of ${n}`);
  // Probed once per 300 ms without a sample: a handful over 2.5 s, not none.
  t.ok(toSlow >= 3 && toSlow <= 20, `the slower one was probed ${toSlow} times`);
});

t.test('weighted splits requests by the replicas\' weights', async (t) => {
  await resetSims();
  const n = 400;
  for (let i = 0; i < n; i++) t.equal((await generate('/wt-1')).status, 200);
  const [toA, toB] = await served();
  t.equal(toA! + toB!, n);
  // Weight 3 of 4: 300 expected, standard deviation 8.7; four of them either side.
  t.ok(Math.abs(toA! - 300) <= 35, `weight 3 got ${toA} of ${n}, weight 1 got ${toB}`);
});

t.test('failover keeps to the first tier while it can take requests, then goes down the tiers in order', async (t) => {
  await resetSims();
  for (let i = 0; i < 20; i++) t.equal((await generate('/fo-1')).status, 200);
  t.same(await served(), [20, 0, 0], 'priority 0 (listed second) took every request');

  // The primary fails: its breaker opens after 3 failures and the secondary takes over.
  await resetSims();
  await sims[0]!.configure({ status: 503 });
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await generate('/fo-1')).status);
  t.same(statuses.slice(0, 3), [503, 503, 503], 'the primary\'s own failures reach the client until its breaker opens');
  t.same(statuses.slice(3), new Array(17).fill(200));
  t.same(await served(), [3, 17, 0], 'then priority 1 took every request, priority 2 none');

  // The secondary goes away too: its refused connection is retried on the last tier.
  await sims[1]!.stop();
  for (let i = 0; i < 5; i++) t.equal((await generate('/fo-1')).status, 200);
  t.equal((await sims[2]!.stats()).requests, 5, 'priority 2 took the rest');
  await sims[0]!.configure({ status: 0 });
  sims[1] = await startSimOn(sims[1]!.port);
});

t.test('failover: a full replica passes requests to the next tier', async (t) => {
  await threeAtOnce(t, '/fo-2');
});

t.test('lowest_cost sends every request to the cheapest replicas, shared by load', async (t) => {
  await resetSims();
  for (let i = 0; i < 40; i++) t.equal((await generate('/lc-1')).status, 200);
  const [toA, toB, toC] = await served();
  t.equal(toB, 0, 'the dearer replica took none');
  t.ok(toA! >= 8 && toC! >= 8, `the two cheapest shared them: ${toA} and ${toC}`);
});

t.test('lowest_cost: the dearer replica takes what the cheap ones cannot', async (t) => {
  await threeAtOnce(t, '/lc-2');
});
