// Routing changes that come together publish one route table, not one each. Every table is
// built, posted and compiled whole (by the control plane and by each worker), so a table per
// change made a start-up with 1,000 deployments take 20-47 s (each replica's first passing
// health check published one), and 333 deployments turning unhealthy at once stalled other
// deployments' requests for up to a second while the workers compiled 333 tables in a row.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { adminClient, waitFor } from '../helpers/control.js';
import { metric } from '../helpers/http.js';
import { metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 25520-25522 belong to this file: 25520-25521 the (unused) replica range, 25522 the
// upstream every remote deployment points at.
const RANGE = { from: 25520, to: 25521 };
const UPSTREAM_PORT = 25522;
const DEPLOYMENTS = 300;
let gw: Gateway | undefined;
let upstream: Server | undefined;

t.teardown(async () => {
  await gw?.stop();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve) ?? resolve(undefined));
});

function listen(): Promise<Server> {
  const server = createServer((_req, res) => res.end('{}'));
  return new Promise((resolve) => server.listen(UPSTREAM_PORT, '127.0.0.1', () => resolve(server)));
}

const tableVersion = async (): Promise<number> => metric(await metricsText(gw!), 'sluice_route_table_version');

t.test('300 deployments start and flap with a handful of route tables', async (t) => {
  upstream = await listen();
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: Array.from({ length: DEPLOYMENTS }, (_, i) => ({
      model: `m${i}`, version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
      health_check: { interval_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1 },
    })),
  });
  const started = await tableVersion();
  t.ok(started <= 30, `every deployment ready after ${started} route tables (one per replica would be ${DEPLOYMENTS} and more)`);
  for (const i of [0, 150, DEPLOYMENTS - 1]) {
    t.equal((await fetch(`${gw.url}/m${i}-1/x`)).status, 200, `m${i}-1 is routed`);
  }

  const admin = adminClient(gw.adminUrl);
  const unhealthy = async (): Promise<number> => (await admin.list()).filter((d) => d.state === 'unhealthy').length;
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream!.close(resolve));
  await waitFor(async () => (await unhealthy()) === DEPLOYMENTS, 30_000, 'every deployment unhealthy');
  upstream = await listen();
  await waitFor(async () => (await unhealthy()) === 0, 30_000, 'every deployment healthy again');
  const flapped = (await tableVersion()) - started;
  t.ok(flapped <= 60, `${DEPLOYMENTS} deployments down and up again: ${flapped} route tables (one per change would be ${2 * DEPLOYMENTS})`);
  t.equal((await fetch(`${gw.url}/m7-1/x`)).status, 200, 'and routed again');
});
