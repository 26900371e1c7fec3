// Readiness: GET /readyz on the admin port answers 200 only while at least one deployment
// has a ready replica (a replica is ready once its readiness probe passed), else 503; the
// gateway port's /readyz says the same from its route table (it holds only ready
// replicas), so it follows a change once the new table reached the workers. /healthz is
// liveness: 200 whatever the deployments do.

import t from 'tap';
import {
  commandFixture, gwRequest, sleep, waitFor, waitState,
} from '../helpers/control.js';

t.setTimeout(180_000);

// Replica ports 18625-18629 belong to this file.
const RANGE = { from: 18625, to: 18629 };
const fx = commandFixture(t, RANGE, 60_000);
const { pids, command } = fx;

/** /readyz on both ports, read one after the other. */
async function readyz(): Promise<{ admin: number; gateway: number; adminBody: unknown; gatewayBody: unknown }> {
  const a = await fx.admin.get('/readyz');
  const g = await gwRequest(`${fx.gw.url}/readyz`);
  return { admin: a.status, gateway: g.status, adminBody: a.body, gatewayBody: g.json };
}

/** The gateway's /readyz once it has `status` (its route table follows the control plane). */
function gatewayReadyz(status: number): Promise<true> {
  return waitFor(async () => (await gwRequest(`${fx.gw.url}/readyz`)).status === status || undefined, 5_000, `gateway /readyz ${status}`);
}

t.test('no deployment: 503 on both ports; /healthz is still 200', async (t) => {
  const r = await readyz();
  t.equal(r.admin, 503, 'admin /readyz');
  t.same(r.adminBody, { status: 'not ready' });
  t.equal(r.gateway, 503, 'gateway /readyz');
  t.match(r.gatewayBody, { status: 'unavailable', route_table_version: Number });
  t.equal((await fx.admin.get('/healthz')).status, 200, 'admin /healthz');
  t.equal((await gwRequest(`${fx.gw.url}/healthz`)).status, 200, 'gateway /healthz');
});

t.test('a replica that never becomes ready, and one that failed, keep both ports at 503', async (t) => {
  const never = await fx.admin.post('/v1/deployments', command('never', 'hang'));
  pids.note(never.body);
  t.equal(never.status, 201);
  t.equal(never.body.state, 'starting');
  const dead = await fx.admin.post('/v1/deployments?wait=true', command('dead', 'exit'));
  pids.note(dead.body);
  t.equal(dead.status, 502, 'the failing deployment failed');
  for (let i = 0; i < 4; i++) {
    const r = await readyz();
    t.same([r.admin, r.gateway], [503, 503], `poll ${i + 1}: 503 on both ports`);
    await sleep(300);
  }
  t.equal((await fx.admin.deployment('never-1'))?.state, 'starting', 'the hung one is still starting');
  t.equal((await fx.admin.deployment('dead-1'))?.state, 'failed');
  t.equal((await fx.admin.del('/v1/deployments/dead-1')).status, 200);
});

t.test('503 while a replica starts, 200 once its probe passes, 503 again when it goes', async (t) => {
  const slow = await fx.admin.post('/v1/deployments', command('slow', 'slow', {}, '1500'));
  pids.note(slow.body);
  t.equal(slow.status, 201);
  t.equal(slow.body.state, 'starting');
  // The server sleeps 1.5 s before it listens: not ready yet, on either port.
  const early = await readyz();
  t.same([early.admin, early.gateway], [503, 503], 'starting: 503 on both ports');

  await waitState(fx.admin, 'slow-1', 'ready', 15_000);
  const a = await fx.admin.get('/readyz');
  t.equal(a.status, 200, 'admin /readyz: 200 as soon as the deployment is ready');
  t.same(a.body, { status: 'ready' });
  await gatewayReadyz(200);
  t.match((await gwRequest(`${fx.gw.url}/readyz`)).json, { status: 'ok' }, 'gateway /readyz: 200 once the new route table is in');
  t.equal((await fx.admin.deployment('never-1'))?.state, 'starting', 'one ready deployment is enough while another still starts');

  t.equal((await fx.admin.del('/v1/deployments/slow-1?grace_ms=0')).status, 200);
  t.equal((await fx.admin.get('/readyz')).status, 503, 'admin /readyz: 503 once the only ready deployment is gone');
  await gatewayReadyz(503);
  t.pass('gateway /readyz: 503 again');
});

t.test('a sim replica: 503 on both ports for as long as it is seen starting, then 200', async (t) => {
  const r = await fx.admin.post('/v1/deployments', { model: 'simr', version: '1', runtime: 'sim' });
  pids.note(r.body);
  t.equal(r.status, 201);
  // Each /readyz pair is read between two views of the deployment; when both views say
  // `starting`, the replica was starting the whole time and both answers must be 503.
  let starting = 0;
  const wrong: string[] = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    const before = (await fx.admin.deployment('simr-1'))?.state;
    const ready = await readyz();
    const after = (await fx.admin.deployment('simr-1'))?.state;
    if (before === 'starting' && after === 'starting') {
      starting++;
      if (ready.admin !== 503 || ready.gateway !== 503) wrong.push(`admin ${ready.admin}, gateway ${ready.gateway}`);
    }
    if (after === 'ready' || Date.now() > deadline) break;
    await sleep(20);
  }
  t.ok(starting > 0, `the replica was seen starting (${starting} polls): a sim takes a process start and a probe`);
  t.same(wrong, [], `503 on both ports in each of the ${starting} polls made while the replica was starting`);
  t.equal((await fx.admin.deployment('simr-1'))?.state, 'ready', 'the sim replica became ready');
  t.equal((await fx.admin.get('/readyz')).status, 200, 'admin /readyz: 200');
  await gatewayReadyz(200);
  t.pass('gateway /readyz: 200');
  for (const id of ['simr-1', 'never-1']) t.equal((await fx.admin.del(`/v1/deployments/${id}?grace_ms=0`)).status, 200, `undeploy ${id}`);
  t.equal((await fx.admin.get('/readyz')).status, 503, 'nothing deployed: 503 again');
});
