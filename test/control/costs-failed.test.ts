// per_replica_hour charges a replica's running time, from its start to its stop: a
// replica that failed (a command that exits at once) runs nothing. Its deployment stays
// deployed, and its replica time used to grow with the wall clock, charged for ever.

import t from 'tap';
import { adminClient, reapServers, sleep } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 19510-19519 belong to this file: gateway, admin, then the replicas'.
const RANGE = { from: 19512, to: 19519 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

interface CostView { id: string; running_hours: number; cost_usd: { replica_hours: number; total: number } }

t.test('a failed replica is not charged after it failed', async (t) => {
  gw = await startGateway({ listen: { host: '127.0.0.1', port: 19510 }, admin: { host: '127.0.0.1', port: 19511 }, ports: RANGE });
  const admin = adminClient(gw.adminUrl);
  const spec = { model: 'broken', version: '1', runtime: 'command', command: ['/bin/false', '{port}'], cost: { per_replica_hour: 3600 } };
  const deployed = await admin.post<{ error: { code: string } }>('/v1/deployments?wait=true', spec);
  t.equal(deployed.status, 502);
  t.equal(deployed.body.error.code, 'SLUICE_ERR_DEPLOY_FAILED');
  t.equal((await admin.deployment('broken-1'))?.state, 'failed', 'it stays deployed, failed');

  const costs = async (): Promise<CostView> => (await admin.get<{ deployments: CostView[] }>('/v1/costs')).body.deployments.find((d) => d.id === 'broken-1')!;
  const before = await costs();
  // Long enough for a running clock to move by a thousandth of a dollar many times over.
  await sleep(1_500);
  const after = await costs();
  t.equal(after.running_hours, before.running_hours, 'its running time stopped when it failed');
  t.equal(after.cost_usd.replica_hours, before.cost_usd.replica_hours, 'and so did its charge');
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const line = metrics.split('\n').find((l) => l.startsWith('sluice_cost_usd_total{deployment="broken-1",kind="replica_hours"}'));
  t.equal(Number(line?.split(' ')[1]), after.cost_usd.replica_hours, 'the metric says the same');
});
