// Built-in progressive delivery (PUT /v1/models/{model}/rollout): a canary takes growing
// shares of the alias traffic while its errors and latency are compared with the stable
// version's each interval; healthy steps advance and promote it, failed checks roll it back
// at once and for good, too little traffic waits. Everything runs through the real gateway
// against simulator processes whose errors and latency are injected through /_sim/config.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, metricsText, replicaPorts, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18260-18279 belong to this file.
let gw: Gateway;
let canaryPort: number;
let stablePort: number;

interface Check { verdict: string; weight: number; canary: { requests: number; error_rate: number }; why: string }
interface Rollout { status: string; step: number; weight: number; failed_checks: number; checks: Check[]; started_at: string; finished_at: string | null }
interface ModelView { weights: Record<string, number> | null; stable: string | null; rollout: Rollout | null }

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18260, to: 18279 },
    log: { level: 'info', access: false },
    workers: 2,
    // The breaker would answer part of a failing canary's requests itself: they count as
    // errors too, but keep the checks about the replica's own answers here.
    policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    deployments: [
      // One token: an answer takes ~ttft, so a few clients make enough requests per interval.
      { model: 'ro', version: '1', runtime: 'sim', args: ['--ttft-ms', '30', '--tokens', '1'] },
      { model: 'ro', version: '2', runtime: 'sim', args: ['--ttft-ms', '30', '--tokens', '1'] },
    ],
    traffic: { ro: { '1': 100 } },
  });
  [stablePort] = await replicaPorts(gw, 'ro-1');
  [canaryPort] = await replicaPorts(gw, 'ro-2');
});
t.teardown(() => gw?.stop());

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await httpRequest(`${gw.adminUrl}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown> };
}

async function model(): Promise<ModelView> {
  return (await admin('GET', '/v1/models/ro')).json as unknown as ModelView;
}

async function simConfig(port: number, tunables: Record<string, unknown>): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${port}/_sim/config`, { method: 'POST', body: JSON.stringify(tunables) });
  if (r.status !== 200) throw new Error(`sim config: ${r.status}`);
}

const drivers = new Set<{ stop(): Promise<Record<string, number>> }>();
t.teardown(async () => {
  for (const d of drivers) await d.stop();
});

/** Closed-loop alias traffic until stopped: `concurrency` clients, each waiting `pauseMs` between requests. */
function drive(concurrency: number, pauseMs = 0): { stop(): Promise<Record<string, number>> } {
  let running = true;
  const counts: Record<string, number> = {};
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      let key: string;
      try {
        const r = await httpRequest(`${gw.url}/ro/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'ro', prompt: 'hi', stream: false }), headers: { 'content-type': 'application/json' } });
        key = `${String(r.headers['x-sluice-version'] ?? '-')}:${r.status}`;
      } catch (err) {
        key = `error:${(err as Error).message}`;
      }
      counts[key] = (counts[key] ?? 0) + 1;
      if (pauseMs > 0) await sleep(pauseMs);
    }
  });
  const driver = {
    async stop() {
      running = false;
      drivers.delete(driver);
      await Promise.all(loops);
      return counts;
    },
  };
  drivers.add(driver);
  return driver;
}

/** Back to the start: version 1 stable with all traffic, both simulators healthy and equally fast. */
async function reset(): Promise<void> {
  const running = (await model()).rollout;
  if (running !== null && (running.status === 'progressing' || running.status === 'waiting for traffic')) await admin('DELETE', '/v1/models/ro/rollout');
  await simConfig(canaryPort, { error_rate: 0, ttft_ms: 30 });
  await simConfig(stablePort, { error_rate: 0, ttft_ms: 30 });
  const r = await admin('POST', '/v1/models/ro/promote', { version: '1' });
  if (r.status !== 200) throw new Error(`promote: ${JSON.stringify(r.json)}`);
}

/** The checks that judged the canary: not those of windows short of traffic. */
function judgedChecks(m: ModelView): Rollout['checks'] {
  return m.rollout!.checks.filter((c) => c.verdict !== 'waiting');
}

async function settled(timeoutMs: number): Promise<ModelView> {
  return eventually(async () => {
    const m = await model();
    return m.rollout !== null && m.rollout.finished_at !== null ? m : undefined;
  }, timeoutMs, 'the rollout to end');
}

t.test('a healthy canary advances through 5 steps and is promoted, never rolled back', async (t) => {
  // Equal simulators: a p99 over a few dozen requests is one request, which a loaded CI
  // machine can stall; the latency limit is loose here (the latency test uses 2).
  await reset();
  const load = drive(8);
  const started = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', steps: [10, 20, 40, 60, 100], interval_s: 1, min_requests: 10, max_latency_ratio: 5 });
  t.equal(started.status, 201, JSON.stringify(started.json));
  t.equal((started.json['rollout'] as Rollout).weight, 10, 'the first step sends 10% to the canary');
  t.same((started.json['weights'] as Record<string, number>), { '1': 90, '2': 10 });
  const m = await settled(20_000);
  const counts = await load.stop();
  t.equal(m.rollout!.status, 'promoted');
  // A window a loaded machine left short of min_requests waits (neither advances nor fails): not a judgement.
  const judged = judgedChecks(m);
  t.same(judged.map((c) => c.verdict), ['healthy', 'healthy', 'healthy', 'healthy', 'healthy'], 'five healthy intervals, one per step');
  t.same(judged.map((c) => c.weight), [10, 20, 40, 60, 100], 'each check judged its step');
  t.equal(m.rollout!.failed_checks, 0);
  t.same(m.weights, { '2': 100 }, 'all traffic to the canary');
  t.equal(m.stable, '2', 'the canary is the stable version now');
  t.notOk(Object.keys(counts).some((k) => !k.endsWith(':200')), `every request answered 200: ${JSON.stringify(counts)}`);
  const events = (await admin('GET', '/v1/models/ro/events')).json['events'] as Array<{ who: string; action: string }>;
  t.ok(events.filter((e) => e.who === 'rollout' && e.action === 'traffic').length >= 5, 'each step is an event');
  t.match(events[events.length - 1], { who: 'rollout', action: 'promote' });
  t.match(await metricsText(gw), /sluice_rollouts_total\{model="ro",result="promoted"\} 1/);
});

t.test('20% injected errors roll the canary back within two intervals, for good', async (t) => {
  await reset();
  await simConfig(canaryPort, { error_rate: 0.2 });
  const load = drive(8);
  const t0 = Date.now();
  const r = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', steps: [20, 50, 100], interval_s: 1, min_requests: 20, failed_checks: 2 });
  t.equal(r.status, 201, JSON.stringify(r.json));
  const m = await settled(10_000);
  const elapsed = Date.now() - t0;
  t.equal(m.rollout!.status, 'rolled_back', JSON.stringify(m.rollout!.checks));
  const intervals = m.rollout!.checks.length;
  t.ok(elapsed < intervals * 1000 + 1500, `rolled back ${elapsed} ms after the start (${intervals} 1 s intervals)`);
  const judged = judgedChecks(m);
  t.same(judged.map((c) => c.verdict), ['failed', 'failed'], 'rolled back at the second failed check');
  t.ok(judged.every((c) => c.canary.error_rate > 0.05), 'both windows saw the canary fail');
  t.same(m.weights, { '1': 100 }, 'all traffic back on the stable version at once');
  // The canary heals: a later healthy window must not resume the rollback's rollout.
  await simConfig(canaryPort, { error_rate: 0 });
  await sleep(2_500);
  const after = await model();
  t.equal(after.rollout!.status, 'rolled_back', 'a rollback is final');
  t.same(after.weights, { '1': 100 });
  const counts = await load.stop();
  t.ok((counts['1:200'] ?? 0) > 0 && (counts['2:500'] ?? 0) > 0, `traffic reached both: ${JSON.stringify(counts)}`);
  t.match(await metricsText(gw), /sluice_rollouts_total\{model="ro",result="rolled_back"\} 1/);
  // Retrying is one explicit call: a new rollout of the same canary, now healthy.
  const load2 = drive(8);
  const again = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', steps: [50, 100], interval_s: 1, min_requests: 10, max_latency_ratio: 5 });
  t.equal(again.status, 201, 'a new rollout starts after a rollback');
  const m2 = await settled(6_000);
  await load2.stop();
  t.equal(m2.rollout!.status, 'promoted');
});

t.test('3x the stable latency rolls the canary back', async (t) => {
  await reset();
  await simConfig(canaryPort, { ttft_ms: 90 });
  const load = drive(6);
  const r = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', steps: [30, 60, 100], interval_s: 1.5, min_requests: 10, failed_checks: 2, max_latency_ratio: 2, latency: 'p99_ttfb' });
  t.equal(r.status, 201, JSON.stringify(r.json));
  const m = await settled(8_000);
  await load.stop();
  t.equal(m.rollout!.status, 'rolled_back', JSON.stringify(m.rollout!.checks));
  // A p99 over ~100 requests is the slowest one or two: a stray slow stable answer can pass one window.
  const failed = m.rollout!.checks.filter((c) => c.verdict === 'failed');
  t.equal(failed.length, 2, `two failed checks: ${m.rollout!.checks.map((c) => c.why).join('; ')}`);
  t.ok(failed.every((c) => /p99_ttfb .* above 2 x stable/.test(c.why)), 'each failed on latency');
  t.same(m.weights, { '1': 100 });
});

t.test('too little traffic neither advances nor fails the step: waiting for traffic', async (t) => {
  await reset();
  const load = drive(1, 200);
  const r = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', steps: [50, 100], interval_s: 1, min_requests: 1000 });
  t.equal(r.status, 201);
  const m = await eventually(async () => {
    const v = await model();
    return v.rollout !== null && v.rollout.checks.length >= 2 ? v : undefined;
  }, 6_000, 'two checks');
  await load.stop();
  t.equal(m.rollout!.status, 'waiting for traffic');
  t.equal(m.rollout!.step, 0, 'still on the first step');
  t.equal(m.rollout!.failed_checks, 0, 'nothing failed');
  t.ok(m.rollout!.checks.every((c) => c.verdict === 'waiting' && /waiting for traffic/.test(c.why)));
  t.same(m.weights, { '1': 50, '2': 50 });
  // Aborting puts the stable version back.
  const aborted = await admin('DELETE', '/v1/models/ro/rollout');
  t.equal(aborted.status, 200);
  t.equal((aborted.json['rollout'] as Rollout).status, 'aborted');
  t.same(aborted.json['weights'], { '1': 100 });
});

t.test('bad rollout requests are refused with the field named, and nothing changes', async (t) => {
  await reset();
  const cases: Array<[unknown, string]> = [
    [{ steps: [10, 100] }, 'canary'],
    [{ canary: '9' }, 'canary'],
    [{ canary: '1' }, 'canary'],
    [{ canary: '2', steps: [50, 20] }, 'steps[1]'],
    [{ canary: '2', steps: [] }, 'steps'],
    [{ canary: '2', interval_s: 0 }, 'interval_s'],
    [{ canary: '2', max_error_rate: 2 }, 'max_error_rate'],
    [{ canary: '2', latency: 'p50' }, 'latency'],
    [{ canary: '2', bogus: 1 }, 'bogus'],
  ];
  for (const [body, field] of cases) {
    const r = await admin('PUT', '/v1/models/ro/rollout', body);
    t.equal(r.status, 400, `${JSON.stringify(body)} -> 400`);
    t.equal((r.json['error'] as { field?: string }).field, field, `${JSON.stringify(body)} names ${field}`);
  }
  t.same((await model()).weights, { '1': 100 }, 'the traffic did not change');
  t.equal((await admin('PUT', '/v1/models/nope/rollout', { canary: '2' })).status, 404);
  // One rollout at a time; a manual change of the traffic takes over from it.
  t.equal((await admin('PUT', '/v1/models/ro/rollout', { canary: '2', interval_s: 30 })).status, 201);
  const second = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', interval_s: 30 });
  t.equal(second.status, 409, 'a second rollout while one runs');
  const manual = await admin('PUT', '/v1/models/ro/traffic', { weights: { '1': 70, '2': 30 } });
  t.equal(manual.status, 200);
  t.equal((manual.json['rollout'] as Rollout).status, 'aborted', 'the operator took over');
  t.same(manual.json['weights'], { '1': 70, '2': 30 });
});

t.test('a canary whose replica crashes fails its check, whatever its answers said', async (t) => {
  await reset();
  const load = drive(4);
  const r = await admin('PUT', '/v1/models/ro/rollout', { canary: '2', steps: [20, 50, 100], interval_s: 1.5, min_requests: 5, failed_checks: 1 });
  t.equal(r.status, 201, JSON.stringify(r.json));
  // The simulator exits after its first streamed token; the supervisor restarts it.
  await simConfig(canaryPort, { crash_after: 1 });
  await httpRequest(`${gw.url}/ro-2/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'ro', prompt: 'hi', stream: true }), headers: { 'content-type': 'application/json' } }).catch(() => undefined);
  const m = await settled(8_000);
  await load.stop();
  t.equal(m.rollout!.status, 'rolled_back', JSON.stringify(m.rollout!.checks));
  t.match(m.rollout!.checks[m.rollout!.checks.length - 1], { verdict: 'failed', why: /crash loop|no ready replica/ });
  t.same(m.weights, { '1': 100 });
  // The restarted simulator listens on the same port with its default tunables.
  await eventually(async () => (await fetch(`http://127.0.0.1:${canaryPort}/_sim/stats`).then((x) => x.status).catch(() => 0)) === 200 || undefined, 10_000, 'the canary back');
});
