// Balancing strategies per deployment (policies.balancer.strategy), through the real
// gateway: round_robin takes each replica in turn; lowest_latency prefers the replica that
// answers first and still probes the slower one.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { replicaPorts, startGateway, startSim, type Gateway, type Sim } from '../helpers/procs.js';

// Replica ports 18310-18339 belong to this file.
let gw: Gateway;
let fast: Sim;
let slow: Sim;

t.before(async () => {
  // One token: an answer takes about the time to first token.
  fast = await startSim(['--ttft-ms', '2', '--tokens', '1']);
  slow = await startSim(['--ttft-ms', '60', '--tokens', '1']);
  gw = await startGateway({
    ports: { from: 18310, to: 18339 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'rr', version: '1', runtime: 'sim', replicas: 3, policies: { balancer: { strategy: 'round_robin' } } },
      {
        model: 'll', version: '1', runtime: 'remote', urls: [slow.url, fast.url], health_check: { enabled: false },
        policies: { balancer: { strategy: 'lowest_latency', latency_buffer: 0.2, probe_interval_ms: 300 }, retry: { attempts: 0 } },
      },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  await fast?.stop();
  await slow?.stop();
});

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
