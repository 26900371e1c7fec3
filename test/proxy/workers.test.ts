// Several data-plane workers on one port: the kernel spreads connections across them,
// both answer, and the admin's /metrics adds up what every worker counted. The native
// uWebSockets.js binding is in use, not its slow Node fallback.

import t from 'tap';
import { httpRequest, metric } from '../helpers/http.js';
import { eventually, jsonLogs, metricsText, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18470-18479 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18470, to: 18479 },
    workers: 2,
    log: { level: 'info', access: true },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  });
});
t.teardown(() => gw?.stop());

const N = 60;

t.test('both workers serve requests on fresh connections', async (t) => {
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    // agent: false: a new TCP connection each time, so the kernel picks a worker each time.
    const r = await httpRequest(`${gw.url}/demo-1/_sim/echo`, { headers: { 'x-request-id': `w-${i}` } });
    t.equal(r.status, 200);
    ids.push(`w-${i}`);
  }
  // Access logs are buffered per worker; they must still show up without a shutdown.
  const entries = await eventually(() => {
    const found = jsonLogs(gw).filter((l) => typeof l.request_id === 'string' && ids.includes(l.request_id));
    return found.length === N ? found : undefined;
  }, 5_000, `access log lines for all ${N} requests`);
  const perWorker = new Map<unknown, number>();
  for (const e of entries) perWorker.set(e.worker, (perWorker.get(e.worker) ?? 0) + 1);
  t.same([...perWorker.keys()].sort(), [0, 1], `both workers logged requests: ${JSON.stringify(Object.fromEntries(perWorker))}`);
  // With the kernel hashing 60 connections over 2 sockets, one worker getting all of them
  // has probability 2^-59; more than 50 of them, about 1e-7.
  for (const [w, n] of perWorker) t.ok(n >= 10, `worker ${String(w)} served ${n} of ${N}`);
});

t.test('/metrics adds up every worker', async (t) => {
  const text = await metricsText(gw);
  t.equal(metric(text, 'sluice_requests_total', { deployment: 'demo-1' }), N, `sluice_requests_total sums to the ${N} requests sent`);
  t.equal(metric(text, 'sluice_requests_total', { deployment: 'demo-1', code: '200' }), N);
  t.equal(metric(text, 'sluice_request_duration_seconds_count', { deployment: 'demo-1' }), N);
  t.equal(metric(text, 'sluice_data_plane_workers'), 2);

  // Idempotent: a second scrape after more traffic sees the new total.
  await httpRequest(`${gw.url}/demo-1/_sim/echo`);
  t.equal(metric(await metricsText(gw), 'sluice_requests_total', { deployment: 'demo-1' }), N + 1);
});

t.test('the native uWebSockets.js binding is in use', async (t) => {
  t.equal(metric(await metricsText(gw), 'sluice_uws_native'), 1, 'sluice_uws_native 1');
  const health = await (await fetch(`${gw.adminUrl}/healthz`)).json() as { status: string; uws_native: boolean };
  t.same(health, { status: 'ok', uws_native: true });
  t.notOk(gw.lines.some((l) => /fallback/i.test(l)), 'no fallback warning in the output');
  // The data plane's own health endpoint answers on the gateway port too.
  const dp = await httpRequest(`${gw.url}/healthz`);
  t.equal(dp.status, 200);
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
