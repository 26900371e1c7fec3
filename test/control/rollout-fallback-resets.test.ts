// A canary whose replica resets connections, with a fallback: the fallback answers the
// client, and the canary counts the 502 the gateway would have answered (as it counts a 5xx
// its replica answered before a fallback took over), and once its breaker is open the 503,
// so a rollout sees its failures and rolls it back instead of waiting for traffic (or
// promoting it) on its answers alone.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { gwMetric, resettingServer, type ResettingServer } from '../helpers/policy.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27900-27904 belong to this file (the stable's model server; the canary is a remote on an ephemeral port).
let gw: Gateway;
let resetting: ResettingServer;

t.before(async () => {
  resetting = await resettingServer();
  gw = await startGateway({
    ports: { from: 27900, to: 27904 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'rs', version: '1', runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1'] },
      // No breaker: every request tries the canary's replica first.
      { model: 'rs', version: '2', runtime: 'remote', urls: [resetting.url], health_check: { enabled: false }, fallbacks: ['rs-1'], policies: { breaker: { enabled: false } } },
      // The same failing canary behind a breaker that opens after two failures, for good.
      { model: 'rs', version: '3', runtime: 'remote', urls: [resetting.url], health_check: { enabled: false }, fallbacks: ['rs-1'], policies: { breaker: { consecutive_failures: 2, reset_timeout_ms: 600_000 } } },
    ],
    traffic: { rs: { '1': 100 } },
  });
});
t.teardown(async () => {
  await gw?.stop();
  await resetting?.close();
});

const generate = (path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> =>
  httpRequest(`${gw.url}${path}/api/generate`, { method: 'POST', body: '{"model":"rs","prompt":"hi","stream":false}', headers: { 'content-type': 'application/json' } });

t.test('a reset its fallback answered counts as the 502 of the deployment that reset it', async (t) => {
  const r = await generate('/rs-2');
  t.equal(r.status, 200, 'the fallback answered');
  t.equal(r.headers['x-sluice-served-by'], 'rs-1');
  t.ok(resetting.seen >= 1, 'the canary\'s replica got the request and reset it');
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'rs-2', code: '502' }), 1, 'rs-2 counts the 502');
  t.equal(await gwMetric(gw, 'sluice_fallbacks_total', { deployment: 'rs-2' }), 1);
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'rs-1', code: '200' }), 1, 'the fallback counts its answer');
});

t.test('once its breaker opened, the requests its fallback takes count as its 503s', async (t) => {
  const seen = resetting.seen;
  for (let i = 0; i < 5; i++) {
    const r = await generate('/rs-3');
    t.equal(r.status, 200, 'the fallback answered');
    t.equal(r.headers['x-sluice-served-by'], 'rs-1');
  }
  t.equal(resetting.seen - seen, 2, 'two resets opened the breaker: the others never reached the replica');
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'rs-3', code: '502' }), 2, 'the resets');
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'rs-3', code: '503' }), 3, 'the breaker\'s refusals the fallback answered');
});

t.test('a rollout of a canary whose every connection is reset rolls it back', async (t) => {
  const put = await httpRequest(`${gw.adminUrl}/v1/models/rs/rollout`, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ canary: '2', steps: [50, 100], interval_s: 1, min_requests: 5, failed_checks: 1 }),
  });
  t.equal(put.status, 201, put.body);
  let running = true;
  const statuses: number[] = [];
  const load = Promise.all(Array.from({ length: 4 }, async () => {
    while (running) statuses.push((await generate('/rs')).status);
  }));
  interface View { weights: Record<string, number>; rollout: { status: string; checks: Array<{ verdict: string; why: string }> } }
  const view = await eventually(async () => {
    const m = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/models/rs`)).body) as View;
    return m.rollout.status === 'progressing' || m.rollout.status === 'waiting for traffic' ? undefined : m;
  }, 15_000, 'the rollout to end');
  running = false;
  await load;
  t.equal(view.rollout.status, 'rolled_back', JSON.stringify(view.rollout.checks));
  t.match(view.rollout.checks.at(-1), { verdict: 'failed', why: /canary error rate 1 above/ });
  t.same(view.weights, { '1': 100 });
  t.ok(statuses.every((s) => s === 200), 'the clients got their answers from the fallback meanwhile');
});
