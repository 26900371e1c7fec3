// Ollama's /api/ps right after a wake: the model's expires_at was the forecast made before it
// hibernated (a time already past) until the autoscaler's first tick on the woken deployment,
// up to a second later; a client polling ps to see whether its model is still loaded read
// that it had unloaded. Now the forecast is dropped at the hibernation: kept loaded until the
// first tick sets it anew, as at the gateway's start.

import t from 'tap';
import { adminClient, gwRequest, reapServers, sleep, waitState, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 24860-24861 belong to this file.
const RANGE = { from: 24860, to: 24861 };
let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    deployments: [{ model: 'doze', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--tokens', '1'], scale: { min_replicas: 0, idle_timeout_s: 1 } }],
  });
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('just woken, a model is not reported as already unloaded', async (t) => {
  for (let round = 0; round < 3; round++) {
    await waitState(admin, 'doze-1', 'hibernated', 15_000);
    // Asleep a while: the forecast it slept by is seconds past.
    await sleep(2_500);
    const r = await gwRequest(`${gw.url}/doze-1/api/generate`, { body: { model: 'doze', prompt: 'hi', stream: false } });
    t.equal(r.status, 200, `round ${round}: the held request was served`);
    const ps = (await gwRequest(`${gw.url}/api/ps`)).json as { models: Array<{ name: string; expires_at: string }> };
    const at = ps.models.find((m) => m.name === 'doze:1')?.expires_at ?? '';
    t.ok(Date.parse(at) > Date.now() - 500, `round ${round}: expires_at ${at} is not in the past`);
  }
});
