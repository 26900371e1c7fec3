// Model servers write to state_dir/logs/<replica>.{out,err}. A replica removed for good (a
// scale-down: its id is not used again) and an undeployed deployment (every replica it ever
// had, hibernated ones included) take their files with them. Before, they stayed for good:
// two files per undeploy or scale-up, each up to 16 MiB, filling a state volume over time.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, waitFor, waitState } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 24170-24179 belong to this file.
const RANGE = { from: 24170, to: 24179 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

const sim = ['--ttft-ms', '0', '--token-ms', '0'];

t.test('undeployed, scaled down: their log files go', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  const logs = join(stateDir, 'logs');
  gw = await startGateway({ ports: RANGE, state_dir: stateDir }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const files = (): string[] => readdirSync(logs).sort();

  t.equal((await admin.post('/v1/deployments?wait=true', { model: 'lf', version: '1', runtime: 'sim', replicas: 2, args: sim })).status, 201);
  t.equal((await admin.post('/v1/deployments?wait=true', { model: 'lf', version: '10', runtime: 'sim', args: sim })).status, 201);
  t.same(files(), ['lf-10_0.err', 'lf-10_0.out', 'lf-1_0.err', 'lf-1_0.out', 'lf-1_1.err', 'lf-1_1.out']);
  // Hibernated, it has no replica, but its files are there from before.
  t.equal((await admin.post('/v1/deployments/lf-1/hibernate?grace_ms=0')).status, 200);
  t.equal((await admin.del('/v1/deployments/lf-1?grace_ms=0')).status, 200);
  t.same(files(), ['lf-10_0.err', 'lf-10_0.out'], 'lf-1\'s files went, lf-10\'s stay');
  t.equal((await admin.del('/v1/deployments/lf-10?grace_ms=0')).status, 200);
  t.same(files(), [], 'and went with it');

  // Scaled up under load, then down when idle: the replicas removed take their files.
  const spec = {
    model: 'sc', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '50', '--tokens', '30'],
    scale: { min_replicas: 1, max_replicas: 3, target_inflight_per_replica: 1, scale_up_window_s: 1, scale_down_window_s: 1 },
  };
  t.equal((await admin.post('/v1/deployments?wait=true', spec)).status, 201);
  const load = Array.from({ length: 6 }, async () => {
    const until = Date.now() + 4_000;
    while (Date.now() < until) await (await fetch(`${gw!.url}/sc-1/api/generate`, { method: 'POST', body: '{"model":"sc","prompt":"hi"}' })).text();
  });
  await waitFor(async () => (await admin.deployment('sc-1'))!.replicas.length === 3, 20_000, 'sc-1 scaled up to 3');
  await Promise.all(load);
  t.ok(existsSync(join(logs, 'sc-1_2.out')), 'the third replica wrote its file');
  await waitFor(async () => (await admin.deployment('sc-1'))!.replicas.length === 1, 30_000, 'sc-1 scaled down to 1');
  await waitState(admin, 'sc-1', 'ready');
  await waitFor(() => files().join(' ') === 'sc-1_0.err sc-1_0.out', 5_000, 'only sc-1/0\'s files left');
  t.pass('the scaled-down replicas\' files went');
});
