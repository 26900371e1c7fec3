// A deployment whose server fails to start (a model that raises at load) runs nothing, yet
// kept its port: with a small `ports` range, the next deploy (the fixed version) was refused
// 503 SLUICE_ERR_NO_FREE_PORT though nothing listened there. A failed replica's port now goes
// back to the range; a wake of the failed deployment takes one afresh.

import t from 'tap';
import { adminClient, canBind, reapServers, waitState } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 28160-28169 belong to this file: 28160 the gateway, 28161 its admin API, 28162-28163
// the model-server ports.
const RANGE = { from: 28162, to: 28163 };
const FAILING = ['python3', '-c', 'raise RuntimeError("boom at load")', '{port}'];
const SIM = ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'];

t.test('the ports of failed deployments serve the next deploys', async (t) => {
  const gw = await startGateway({ listen: { host: '127.0.0.1', port: 28160 }, admin: { host: '127.0.0.1', port: 28161 }, ports: RANGE });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  for (const model of ['broken', 'worse']) {
    const res = await admin.post('/v1/deployments?wait=true', { model, version: '1', runtime: 'command', command: FAILING, readiness_path: '/' });
    t.equal(res.status, 502, `${model}-1 fails: ${res.text.slice(0, 200)}`);
  }
  t.ok(await canBind(RANGE.from) && await canBind(RANGE.to), 'nothing listens on either port');

  const fixed = await admin.post('/v1/deployments?wait=true', { model: 'fixed', version: '1', runtime: 'sim', args: SIM });
  t.equal(fixed.status, 201, `a deploy after two failures: ${fixed.text.slice(0, 200)}`);
  t.equal(fixed.body.state, 'ready');
  const other = await admin.post('/v1/deployments?wait=true', { model: 'other', version: '1', runtime: 'sim', args: SIM });
  t.equal(other.status, 201, `and another: ${other.text.slice(0, 200)}`);
  const ports = [fixed.body.replicas[0].port, other.body.replicas[0].port].sort();
  t.same(ports, [RANGE.from, RANGE.to], 'on the two ports the failed ones had');

  // Both ports taken: a wake of a failed deployment says so, and changes nothing.
  const wake = await admin.post('/v1/deployments/broken-1/wake');
  t.equal(wake.status, 502, `no port for the wake: ${wake.text.slice(0, 200)}`);
  t.equal((await admin.del('/v1/deployments/other-1?grace_ms=0')).status, 200);
  const again = await admin.post('/v1/deployments/broken-1/wake');
  t.equal(again.status, 200, `a wake with a port free: ${again.text.slice(0, 200)}`);
  await waitState(admin, 'broken-1', 'failed');
  const last = await admin.post('/v1/deployments?wait=true', { model: 'last', version: '1', runtime: 'sim', args: SIM });
  t.equal(last.status, 201, `the port it failed on serves another deploy: ${last.text.slice(0, 200)}`);
});
