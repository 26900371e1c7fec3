// Autoscaling through the real gateway: under a load run a deployment grows from 1 replica
// towards its max, with no request failing; when the load stops it shrinks back to 1, its
// removed replicas drained first and their ports freed; a scale-up with no free port is
// refused with an event and leaves nothing half-made.

import t from 'tap';
import { adminClient, canBind, gwRequest, reapServers, sleep, waitFor, type AdminClient } from '../helpers/control.js';
import { metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 18950-18952 belong to this file: three, so that a fourth replica finds none.
const RANGE = { from: 18950, to: 18952 };
let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [{
      model: 'grow', version: '1', runtime: 'sim', replicas: 1, args: ['--ttft-ms', '300', '--tokens', '1'],
      scale: { max_replicas: 4, target_inflight_per_replica: 2, scale_up_window_s: 2, scale_down_window_s: 3 },
    }],
  });
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

interface Event { action: string; from: number; to: number; why: string }

async function events(): Promise<Event[]> {
  return (await admin.get('/v1/deployments/grow-1/events')).body.events as Event[];
}

/** `clients` loops sending requests until `stop()`; every status is kept. */
function load(clients: number): { stop(): Promise<number[]> } {
  let running = true;
  const statuses: number[] = [];
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const r = await gwRequest(`${gw.url}/grow-1/api/generate`, { method: 'POST', body: { model: 'demo', prompt: 'hi', stream: false }, timeoutMs: 30_000 });
      statuses.push(r.status);
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return statuses;
    },
  };
}

t.test('grows from 1 to 3 under load, refused at the port range with an event, and back to 1 after the window, with no failed request', async (t) => {
  const run = load(12);
  await waitFor(async () => {
    const d = (await admin.deployment('grow-1'))!;
    return d.replicas.filter((r) => r.state === 'ready').length >= 3 ? true : undefined;
  }, 30_000, 'three ready replicas');
  const refused = await waitFor(async () => (await events()).find((e) => e.action === 'scale_up_refused'), 10_000, 'the fourth replica to be refused');
  t.match(refused.why, /port/i, `why: ${refused.why}`);
  await sleep(2_000);
  const busy = (await admin.deployment('grow-1'))!;
  t.equal(busy.replicas.length, 3, 'three replicas: the one that found no port left nothing behind');
  t.ok(busy.replicas.every((r) => r.state === 'ready'), 'all serve');
  const underLoad = await run.stop();
  t.ok(underLoad.length > 50, `${underLoad.length} requests during the scale-up`);
  t.same(underLoad.filter((s) => s !== 200), [], 'none failed');
  t.match(await events(), [{ action: 'scale_up', from: 1 }], 'the scale-up is an event');

  // A light load goes on while it shrinks: no request may fail because of the scale-down.
  const light = load(1);
  const ports = busy.replicas.map((r) => r.port);
  await waitFor(async () => ((await admin.deployment('grow-1'))!.replicas.length === 1 ? true : undefined), 30_000, 'back to one replica');
  const duringScaleDown = await light.stop();
  t.same(duringScaleDown.filter((s) => s !== 200), [], `none of ${duringScaleDown.length} requests failed during the scale-down`);
  const downs = (await events()).filter((e) => e.action === 'scale_down');
  t.match(downs, [{ from: 3, to: 2 }, { from: 2, to: 1 }], 'one replica at a time');
  const kept = (await admin.deployment('grow-1'))!.replicas[0]!.port;
  const freed = ports.filter((p) => p !== kept);
  await waitFor(async () => ((await Promise.all(freed.map(canBind))).every(Boolean) ? true : undefined), 5_000, 'the removed replica\'s port to be free');
  t.pass(`port ${freed.join(', ')} freed`);
  const text = await metricsText(gw);
  t.match(text, /^sluice_deployment_replicas\{deployment="grow-1"\} 1$/m);
  t.match(text, /^sluice_scale_events_total\{deployment="grow-1",action="scale_down"\} 2$/m);
});
