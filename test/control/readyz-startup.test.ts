// Readiness at start-up: /readyz (both ports) stays 503 until every deployment of the
// config has a ready replica (or has failed), so a balancer sends nothing that would get
// 503 SLUICE_ERR_NO_READY_REPLICA; the "ready" log line follows readiness, after
// "sluice is listening". A deployment that fails does not hold readiness back.

import t from 'tap';
import { adminClient, writeServerScript, serverCommand, gwRequest, reapServers, sleep } from '../helpers/control.js';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 18920-18929 belong to this file.
const RANGE = { from: 18920, to: 18929 };
let gw: Gateway;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('503 on both ports until the slow deployment is ready; then every request is served', async (t) => {
  const script = writeServerScript(t.testdir());
  const started = Date.now();
  gw = await startGateway({
    ports: RANGE,
    deployments: [
      { model: 'quick', version: '1', runtime: 'sim' },
      // Listens only after 5 s: the quick one is ready long before, even on a busy machine
      // (where a sim replica has taken over 2 s to start).
      { model: 'slow', version: '1', runtime: 'command', command: serverCommand(script, 'slow', '5000'), readiness_path: '/ping', start_timeout_ms: 30_000 },
      { model: 'dead', version: '1', runtime: 'command', command: serverCommand(script, 'exit'), readiness_path: '/ping', start_timeout_ms: 30_000 },
    ],
  }, {}, false);
  const polls: Array<{ ms: number; admin: number; gateway: number; slow: number }> = [];
  for (;;) {
    // In this order, one after the other: once a port has said 200, whatever is asked after
    // must be served. Asked at once, the three are answered by two threads at slightly
    // different moments, and an earlier 503 may arrive with a later 200.
    const a = await gwRequest(`${gw.adminUrl}/readyz`);
    const g = await gwRequest(`${gw.url}/readyz`);
    // A request for it now would be held until it is ready (policies.hold): ask the admin API.
    const s = (await adminClient(gw.adminUrl).deployment('slow-1'))?.state === 'ready' ? 200 : 503;
    polls.push({ ms: Date.now() - started, admin: a.status, gateway: g.status, slow: s });
    if (a.status === 200 && g.status === 200) break;
    if (Date.now() - started > 30_000) break;
    await sleep(50);
  }
  const last = polls.at(-1)!;
  t.same([last.admin, last.gateway], [200, 200], `ready on both ports after ${last.ms} ms`);
  t.ok(polls.length > 3, `${polls.length} polls: not ready at once`);
  const early = polls.filter((p) => p.admin === 200 || p.gateway === 200).filter((p) => p.slow !== 200 && p !== last);
  t.same(early, [], 'never 200 on either port while the slow deployment could not answer');
  t.equal((await gwRequest(`${gw.url}/slow-1/ping`)).status, 200, 'once ready, the slow deployment answers');
  t.equal((await gwRequest(`${gw.url}/quick-1/api/tags`)).status, 200);

  const logs = jsonLogs(gw).map((l) => l.msg);
  const listening = logs.indexOf('sluice is listening');
  const ready = logs.indexOf('ready');
  t.ok(listening >= 0 && ready > listening, '"ready" is logged after "sluice is listening"');
  const slowReady = jsonLogs(gw).findIndex((l) => l.msg === 'replica state' && l.deployment === 'slow-1' && l.state === 'ready');
  t.ok(slowReady >= 0 && slowReady < ready, '"ready" follows the slow replica\'s readiness');
  t.equal(logs.filter((m) => m === 'ready').length, 1, 'logged once');
});
