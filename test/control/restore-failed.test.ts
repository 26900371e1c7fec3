// A deployment stored from the admin API that cannot start when the gateway restarts (here:
// its port is taken by another program and the range has no other) is listed as failed,
// saying why, and can be undeployed. It used to be left out of the running gateway (404
// to every call, undeploy included) while it stayed in the state file.

import { readFileSync } from 'node:fs';
import t from 'tap';
import { adminClient, occupy, reapServers } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 19520-19529 belong to this file: gateway, admin, then one for the replicas.
const RANGE = { from: 19522, to: 19522 };
let gw: Gateway | undefined;
let taken: { close(): Promise<void> } | undefined;

t.teardown(async () => {
  await gw?.stop();
  await taken?.close();
  await reapServers([], RANGE);
});

t.test('a stored deployment that cannot start at restore is listed as failed', async (t) => {
  const config = { listen: { host: '127.0.0.1', port: 19520 }, admin: { host: '127.0.0.1', port: 19521 }, ports: RANGE };
  gw = await startGateway(config);
  const first = gw;
  const admin = adminClient(first.adminUrl);
  t.equal((await admin.post('/v1/deployments?wait=true', { model: 'kept', version: '1', runtime: 'sim' })).status, 201);
  await first.stop();
  gw = undefined;

  taken = await occupy(19522);
  // The same state dir: what the first run stored.
  const stateDir = (JSON.parse(readFileSync(first.configFile, 'utf8')) as { state_dir: string }).state_dir;
  gw = await startGateway({ ...config, state_dir: stateDir });
  const again = adminClient(gw.adminUrl);
  const view = await again.deployment('kept-1');
  t.equal(view?.state, 'failed', 'listed, failed');
  t.match(view?.last_error, /no free port left in 19522-19522/, 'saying why');
  const refused = await fetch(`${gw.url}/kept-1/api/generate`, { method: 'POST', body: '{"model":"kept","prompt":"hi"}' });
  t.equal(refused.status, 503, 'its requests are refused at once');
  t.equal((await again.del('/v1/deployments/kept-1')).status, 200, 'and it can be undeployed');
  t.equal(await again.deployment('kept-1'), null);
});
