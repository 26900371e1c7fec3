// A canary that scales to zero: asleep, it has no ready replica for want of requests, not
// because it fails. A rollout waits for its traffic as for any canary short of requests, and
// the requests its step sends wake it; a check during the wake is no failure. It used to fail
// every check ("the canary has no ready replica") and roll back with no traffic at all.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27915-27919 belong to this file.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27915, to: 27919 },
    log: { level: 'info', access: false },
    policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    deployments: [
      { model: 'hc', version: '1', runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1'] },
      // Its wake takes longer than the rollout's interval: a check falls in it.
      { model: 'hc', version: '2', runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1', '--start-delay-ms', '1500'], scale: { min_replicas: 0, idle_timeout_s: 600 } },
    ],
    traffic: { hc: { '1': 100 } },
  });
});
t.teardown(() => gw?.stop());

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await httpRequest(`${gw.adminUrl}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: r.status, json: JSON.parse(r.body) };
}

const whys = (m: { rollout: { checks: Array<{ why: string }> } }): string => m.rollout.checks.map((c) => c.why).join('; ');

t.test('a hibernated canary waits for traffic, wakes on it and is promoted', async (t) => {
  t.equal((await admin('POST', '/v1/deployments/hc-2/hibernate')).status, 200);
  await eventually(async () => ((await admin('GET', '/v1/deployments/hc-2')).json.state === 'hibernated' ? true : undefined), 10_000, 'hc-2 to hibernate');
  // The requests held during the wake wait for it: their time to first byte is the cold
  // start, which its clients saw (the latency limit is left out of this test).
  const started = await admin('PUT', '/v1/models/hc/rollout', { canary: '2', steps: [50, 100], interval_s: 0.5, min_requests: 3, failed_checks: 1, max_latency_ratio: 1000 });
  t.equal(started.status, 201, started.json.error?.message ?? 'the rollout started');

  // No request: the canary sleeps through several intervals.
  await sleep(1_800);
  const idle = (await admin('GET', '/v1/models/hc')).json;
  t.equal(idle.rollout.status, 'waiting for traffic', whys(idle));
  t.ok(idle.rollout.checks.length >= 2, 'checked several times');
  t.ok(idle.rollout.checks.every((c: { verdict: string }) => c.verdict === 'waiting'), 'no check failed');
  t.equal((await admin('GET', '/v1/deployments/hc-2')).json.state, 'hibernated', 'still asleep');

  // Traffic: the step's share of it wakes the canary (held meanwhile), then serves it.
  let running = true;
  const statuses: number[] = [];
  const load = Promise.all(Array.from({ length: 3 }, async () => {
    while (running) {
      const r = await httpRequest(`${gw.url}/hc/api/generate`, { method: 'POST', body: '{"model":"hc","prompt":"x","stream":false}', headers: { 'content-type': 'application/json' } });
      statuses.push(r.status);
      await sleep(20);
    }
  }));
  const done = await eventually(async () => {
    const m = (await admin('GET', '/v1/models/hc')).json;
    return m.rollout.finished_at !== null ? m : undefined;
  }, 20_000, 'the rollout to end');
  running = false;
  await load;
  t.equal(done.rollout.status, 'promoted', whys(done));
  t.notOk(done.rollout.checks.some((c: { verdict: string }) => c.verdict === 'failed'), 'no failed check, the wake included');
  t.same(done.weights, { '2': 100 });
  t.ok(statuses.every((s) => s === 200), 'every request answered');
});
