// Traffic splitting and replica choice: the alias route `/<model>/` follows the `traffic`
// weights (or the last-declared version without them), and replicas of one deployment
// share load by least outstanding requests (power of two random choices).

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { deployments, replicaPorts, simStats, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18450-18469 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18450, to: 18469 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'w', version: '1', runtime: 'sim' },
      { model: 'w', version: '2', runtime: 'sim' },
      // Declared out of version order on purpose: "last declared" is u-2, not u-3.
      { model: 'u', version: '1', runtime: 'sim' },
      { model: 'u', version: '3', runtime: 'sim' },
      { model: 'u', version: '2', runtime: 'sim' },
      { model: 'lb', version: '1', runtime: 'sim', replicas: 3 },
    ],
    traffic: { w: { '1': 80, '2': 20 } },
  });
});
t.teardown(() => gw?.stop());

/** Runs `count` calls of `fn` with at most `concurrency` at a time. */
async function pool<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

/** Which replica (by port) answered a /_sim/echo: its Host header says so. */
async function echoPort(path: string): Promise<number> {
  const r = await httpRequest(`${gw.url}${path}`);
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.body}`);
  return Number(String((JSON.parse(r.body) as { headers: { host: string } }).headers.host).split(':')[1]);
}

t.test('the alias splits traffic by the configured weights (80/20)', async (t) => {
  const [p1] = await replicaPorts(gw, 'w-1');
  const [p2] = await replicaPorts(gw, 'w-2');
  const N = 500;
  const ports = await pool(N, 10, () => echoPort('/w/_sim/echo'));
  const v1 = ports.filter((p) => p === p1).length;
  const v2 = ports.filter((p) => p === p2).length;
  t.equal(v1 + v2, N, 'every request went to one of the two versions');
  // v1 ~ Binomial(500, 0.8): mean 400, sd sqrt(500*0.8*0.2) = 8.94. +-40 is +-4.5 sd, a
  // false failure about once in 10^5 runs; a 50/50 or inverted split (250, 100) fails.
  t.ok(v1 >= 360 && v1 <= 440, `version 1 got ${v1} of ${N} (expected 400 +- 40)`);
});

t.test('without traffic weights, the alias goes to the last-declared version', async (t) => {
  const [last] = await replicaPorts(gw, 'u-2');
  const ports = await pool(30, 5, () => echoPort('/u/_sim/echo'));
  t.same(new Set(ports), new Set([last]), 'all 30 went to u-2');
  // Pinned routes still reach every version.
  for (const v of ['1', '2', '3']) {
    const [p] = await replicaPorts(gw, `u-${v}`);
    t.equal(await echoPort(`/u-${v}/_sim/echo`), p, `/u-${v}/ reaches u-${v}`);
  }
});

t.test('concurrent slow requests spread evenly across three replicas', async (t) => {
  const ports = await replicaPorts(gw, 'lb-1');
  t.equal(ports.length, 3);
  for (const p of ports) await fetch(`http://127.0.0.1:${p}/_sim/reset`, { method: 'POST' });
  const N = 60;
  // All 60 are in flight at once (each sleeps 1.5 s upstream), so each choice sees the
  // outstanding counts the previous ones left.
  const replies = await Promise.all(Array.from({ length: N }, () => httpRequest(`${gw.url}/lb-1/_sim/sleep?ms=1500`)));
  t.ok(replies.every((r) => r.status === 200), 'all succeeded');
  const counts = await Promise.all(ports.map(async (p) => (await simStats(p)).requests));
  t.equal(counts.reduce((a, b) => a + b, 0), N);
  // Least outstanding over two random choices keeps three replicas within a few requests
  // of 20 each: simulated over 10^6 runs, a count outside 17..23 happens 3.4e-5 of the
  // time; a uniformly random pick lands outside 60% of the time.
  for (const [i, c] of counts.entries()) t.ok(c >= 17 && c <= 23, `replica ${i} got ${c} of ${N} (expected 17..23)`);
});

t.test('a slow replica gets few requests: choice follows outstanding requests', async (t) => {
  const ports = await replicaPorts(gw, 'lb-1');
  const [slow, ...fast] = ports as [number, number, number];
  await fetch(`http://127.0.0.1:${slow}/_sim/config`, { method: 'POST', body: JSON.stringify({ ttft_ms: 1500, token_ms: 0, tokens: 1 }) });
  for (const p of fast) await fetch(`http://127.0.0.1:${p}/_sim/config`, { method: 'POST', body: JSON.stringify({ ttft_ms: 0, token_ms: 0, tokens: 1 }) });
  for (const p of ports) await fetch(`http://127.0.0.1:${p}/_sim/reset`, { method: 'POST' });
  const N = 45;
  const pending: Array<Promise<unknown>> = [];
  for (let i = 0; i < N; i++) {
    pending.push(httpRequest(`${gw.url}/lb-1/api/generate`, { method: 'POST', body: '{"model":"demo","prompt":"x","stream":false}' }));
    await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.all(pending);
  const counts = await Promise.all(ports.map(async (p) => (await simStats(p)).requests));
  t.equal(counts.reduce((a, b) => a + b, 0), N);
  // Once the slow replica holds a request for 1.5 s, the fast ones (answering in ~1 ms)
  // have fewer outstanding and win every comparison. Round robin or random would send it
  // ~15 of 45 (P(<= 4) under Binomial(45, 1/3) is about 2e-4).
  t.ok(counts[0]! <= 4, `the slow replica got ${counts[0]} of ${N}; the fast ones ${counts[1]} and ${counts[2]}`);
  await fetch(`http://127.0.0.1:${slow}/_sim/config`, { method: 'POST', body: JSON.stringify({ ttft_ms: 20, token_ms: 5, tokens: 20 }) });
});

t.test('the deployments view lists three ready replicas on distinct ports', async (t) => {
  const d = (await deployments(gw)).find((x) => x.id === 'lb-1')!;
  t.equal(d.replicas.length, 3);
  t.equal(new Set(d.replicas.map((r) => r.port)).size, 3);
  t.ok(d.replicas.every((r) => r.state === 'ready'));
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
