// A gateway killed (kill -9) leaves its model servers' ports on record. When such a server
// is gone by the next start, and another program has taken its port meanwhile, the replica
// is started on a free port, as a new replica would be: it was started on the recorded
// port, exited (address in use) while the other program answered its readiness checks, was
// routed there as "ready", and crash-looped until `failed` with free ports left in the range.
//
// Replica ports 26820-26829 belong to this file; the gateways listen on port 0.

import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, canBind, PidLog, reapServers, waitFor, type DeploymentView } from '../helpers/control.js';

t.setTimeout(120_000);

const RANGE = { from: 26820, to: 26829 };
const pids = new PidLog();
const running = new Set<Gateway>();

t.teardown(async () => {
  for (const gw of running) await gw.stop('SIGKILL');
  await reapServers(pids.pids, RANGE);
});

async function view(gw: Gateway): Promise<DeploymentView> {
  const r = await adminClient(gw.adminUrl).get('/v1/deployments/rp-1');
  pids.note(r.body);
  return r.body as DeploymentView;
}

t.test('a recorded port another program took while no gateway ran is skipped', async (t) => {
  const config = {
    ports: RANGE,
    state_dir: join(mkdtempSync(join(tmpdir(), 'sluice-recorded-port-')), 'state'),
    deployments: [{ model: 'rp', version: '1', runtime: 'sim' }],
  };
  const first = await startGateway(config);
  running.add(first);
  const [server] = (await view(first)).replicas;
  running.delete(first);
  await first.stop('SIGKILL');
  process.kill(server!.pid!, 'SIGKILL');
  await waitFor(() => canBind(server!.port), 5_000, 'the dead server\'s port to be free');
  // Someone else's server, answering 200 to anything: the replica's readiness check included.
  const foreign = createServer((_req, res) => res.end('foreign'));
  await new Promise<void>((resolve) => foreign.listen(server!.port, '127.0.0.1', resolve));
  t.teardown(() => foreign.close());

  const gw = await startGateway(config, {}, false);
  running.add(gw);
  const d = await waitFor(async () => {
    const v = await view(gw);
    return v.replicas[0]?.state === 'ready' && v.replicas[0].port !== server!.port ? v : undefined;
  }, 15_000, 'rp-1 ready on another port');
  t.equal(d.replicas[0]!.restarts, 0, 'started once, not crash-looping');
  t.match(await (await fetch(`${gw.url}/rp-1/api/tags`)).text(), /"models"/, 'its requests reach the simulator, not the other program');
  running.delete(gw);
  await gw.stop();
  await assertNoServersLeft(t, pids.pids, RANGE);
});
