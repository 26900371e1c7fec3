// Active health checks of remote replicas, through the real gateway against real HTTP
// servers: a replica is routed only once a check passes, leaves the route table after
// unhealthy_threshold failed checks in a row and comes back after healthy_threshold
// passes; the admin API and /metrics show it; ?wait=true waits for the first passing
// check; the checks stop when the deployment is removed.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { freePort } from '../fixtures/free-port.js';
import { adminClient, gwRequest, sleep, waitFor, waitState, type AdminClient } from '../helpers/control.js';
import { jsonLogs, metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

/** An upstream whose GET /health answers `healthStatus`; it counts the checks it sees. */
interface Upstream {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  healthStatus: number;
  healthChecks: number;
  requests: number;
  close(): Promise<void>;
}

async function upstream(port = 0): Promise<Upstream> {
  const u: Upstream = {
    server: createServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/health') {
        u.healthChecks++;
        res.writeHead(u.healthStatus, { 'content-type': 'text/plain' });
        res.end(u.healthStatus === 200 ? 'ok' : 'down');
        return;
      }
      u.requests++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ port: u.port, url: req.url }));
    }),
    port: 0, url: '', healthStatus: 200, healthChecks: 0, requests: 0,
    close: () => new Promise<void>((resolve) => {
      u.server.closeAllConnections();
      u.server.close(() => resolve());
    }),
  };
  await new Promise<void>((resolve) => u.server.listen(port, '127.0.0.1', () => resolve()));
  (u as { port: number }).port = (u.server.address() as AddressInfo).port;
  (u as { url: string }).url = `http://127.0.0.1:${u.port}`;
  return u;
}

const FAST = { interval_ms: 100, timeout_ms: 500, healthy_threshold: 2, unhealthy_threshold: 2 };

let gw: Gateway;
let admin: AdminClient;
let live: Upstream;
let deadPort: number;
const closers: Array<() => Promise<void>> = [];

t.before(async () => {
  live = await upstream();
  closers.push(() => live.close());
  deadPort = await freePort();
  gw = await startGateway({
    log: { level: 'info', access: false },
    deployments: [
      // GET /health every 100 ms.
      { model: 'hc', version: '1', runtime: 'remote', urls: [live.url], health_check: { ...FAST, path: '/health' } },
      // The defaults but faster: a TCP connect, which nothing accepts.
      { model: 'dead', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${deadPort}`], health_check: { interval_ms: 100, unhealthy_threshold: 2 } },
      // One replica of each: requests go to the live one only.
      { model: 'pair', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${deadPort}`, live.url], health_check: { interval_ms: 100, unhealthy_threshold: 1 } },
    ],
  }, {}, false);
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  for (const close of closers) await close();
});

t.test('start-up: a dead remote settles as unhealthy and does not hold readiness back', async (t) => {
  await waitFor(async () => (await gwRequest(`${gw.url}/readyz`)).status === 200, 20_000, '/readyz 200 on the gateway port');
  const dead = await waitState(admin, 'dead-1', 'unhealthy', 10_000);
  t.equal(dead.replicas[0]!.state, 'unhealthy');
  t.match(dead.replicas[0], { health: { status: 'unhealthy', check: 'tcp', last_error: 'ECONNREFUSED', consecutive_successes: 0 } });
  t.ok(dead.replicas[0]!.health!.consecutive_failures >= 2, 'two failed checks in a row');
  const hc = await admin.deployment('hc-1');
  t.equal(hc!.state, 'ready');
  t.match(hc!.replicas[0], { state: 'ready', health: { status: 'healthy', check: 'GET /health', interval_ms: 100, last_error: null } });
  t.ok(jsonLogs(gw).some((l) => l.msg === 'replica unhealthy' && l.replica === 'dead-1/0' && l.error === 'ECONNREFUSED'), 'the unhealthy replica is logged with the reason');
});

t.test('an unhealthy replica is not routed: 503 no ready replica, not 502 after a refused connect', async (t) => {
  const res = await gwRequest(`${gw.url}/dead-1/v1/models`);
  t.equal(res.status, 503);
  t.equal(res.json?.error?.code, 'SLUICE_ERR_NO_READY_REPLICA');
  const before = live.requests;
  for (let i = 0; i < 50; i++) {
    const r = await gwRequest(`${gw.url}/pair-1/x`);
    t.equal(r.status, 200, `request ${i} answered by the live replica`);
    if (r.status !== 200) break;
  }
  t.equal(live.requests - before, 50, 'all 50 reached the live replica');
  const m = await metricsText(gw);
  t.match(m, /sluice_retries_total\{deployment="pair-1"\} 0\b/, 'no request was sent to the dead replica first');
});

t.test('a replica failing its checks leaves the route table and comes back once they pass', async (t) => {
  t.equal((await gwRequest(`${gw.url}/hc-1/x`)).status, 200);
  live.healthStatus = 500;
  const down = await waitState(admin, 'hc-1', 'unhealthy', 10_000);
  t.match(down.replicas[0], { state: 'unhealthy', health: { status: 'unhealthy', last_error: 'GET /health answered 500' } });
  const refused = await waitFor(async () => {
    const r = await gwRequest(`${gw.url}/hc-1/x`);
    return r.status === 503 ? r : undefined;
  }, 5_000, 'the data plane to stop routing to hc-1');
  t.equal(refused.json?.error?.code, 'SLUICE_ERR_NO_READY_REPLICA');
  let m = await metricsText(gw);
  t.match(m, /sluice_replica_ready\{deployment="hc-1",replica="hc-1\/0"\} 0\b/);
  t.match(m, /sluice_health_checks_total\{deployment="hc-1",replica="hc-1\/0",result="fail"\} [1-9]/);

  // Back after healthy_threshold (2) passes in a row: not on the first one.
  const checksAtRecovery = live.healthChecks;
  live.healthStatus = 200;
  const up = await waitState(admin, 'hc-1', 'ready', 10_000);
  t.ok(live.healthChecks - checksAtRecovery >= 2, `routed again after ${live.healthChecks - checksAtRecovery} passing checks (threshold 2)`);
  t.match(up.replicas[0], { state: 'ready', health: { status: 'healthy' } });
  await waitFor(async () => (await gwRequest(`${gw.url}/hc-1/x`)).status === 200, 5_000, 'hc-1 to be routed again');
  m = await metricsText(gw);
  t.match(m, /sluice_replica_ready\{deployment="hc-1",replica="hc-1\/0"\} 1\b/);
  t.match(m, /sluice_health_checks_total\{deployment="hc-1",replica="hc-1\/0",result="pass"\} [1-9]/);
  t.ok(jsonLogs(gw).some((l) => l.msg === 'replica healthy' && l.replica === 'hc-1/0'), 'the recovery is logged');
});

t.test('?wait=true answers once the first check passes', async (t) => {
  const port = await freePort();
  let late: Upstream | undefined;
  let listeningAt = 0;
  // The server comes up 1.5 s after the deploy call.
  const timer = setTimeout(() => {
    void upstream(port).then((u) => {
      late = u;
      listeningAt = Date.now();
      closers.push(() => u.close());
    });
  }, 1_500);
  t.teardown(() => clearTimeout(timer));
  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'late', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port}`],
    health_check: { interval_ms: 100, unhealthy_threshold: 50, path: '/health' },
  });
  const answeredAt = Date.now();
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.equal(r.body.state, 'ready');
  t.ok(late !== undefined && answeredAt >= listeningAt, 'answered only after the server listened');
  t.ok(late!.healthChecks >= 1, 'the server saw the check');
  t.equal((await gwRequest(`${gw.url}/late-1/y`)).status, 200);
});

t.test('?wait=true on a URL that never answers: 502 naming the check; the deployment stays and is routed once it passes', async (t) => {
  const port = await freePort();
  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'never', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port}`], health_check: { interval_ms: 100, unhealthy_threshold: 3 },
  });
  t.equal(r.status, 502, r.text.slice(0, 300));
  t.equal(r.body.error.code, 'SLUICE_ERR_DEPLOY_FAILED');
  t.match(r.body.error.message, /never-1 passed its health check \(ECONNREFUSED\)/);
  t.ok(r.headers.get('x-request-id'), 'the error carries a request id');
  t.equal((await admin.deployment('never-1'))?.state, 'unhealthy', 'still deployed');
  const u = await upstream(port);
  closers.push(() => u.close());
  await waitState(admin, 'never-1', 'ready', 10_000);
  await waitFor(async () => (await gwRequest(`${gw.url}/never-1/z`)).status === 200, 5_000, 'never-1 to be routed');
});

t.test('the checks stop when the deployment is removed', async (t) => {
  const u = await upstream();
  closers.push(() => u.close());
  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'gone', version: '1', runtime: 'remote', urls: [u.url], health_check: { interval_ms: 50, path: '/health' },
  });
  t.equal(r.status, 201, r.text.slice(0, 300));
  await waitFor(() => u.healthChecks >= 3, 5_000, 'a few checks');
  t.equal((await admin.del('/v1/deployments/gone-1?grace_ms=0')).status, 200);
  const after = u.healthChecks;
  await sleep(600);
  t.equal(u.healthChecks, after, 'no check after the removal (12 would have run)');
});

t.test('health_check is refused on deployments sluice starts itself, naming the field', async (t) => {
  const r = await admin.post('/v1/deployments', { model: 'local', version: '1', runtime: 'sim', health_check: { interval_ms: 100 } });
  t.equal(r.status, 400, r.text);
  t.equal(r.body.error.field, 'health_check');
  const bad = await admin.post('/v1/deployments', { model: 'bad', version: '1', runtime: 'remote', urls: [live.url], health_check: { interval_ms: 0 } });
  t.equal(bad.status, 400, bad.text);
  t.equal(bad.body.error.field, 'health_check.interval_ms');
  t.equal(await admin.deployment('local-1'), null, 'nothing was deployed');
});
