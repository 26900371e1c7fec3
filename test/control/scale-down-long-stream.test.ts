// A scale-down retires the newest replica once its requests end. It waited at most
// shutdown.grace_ms (10 s by default), then stopped the server under any stream still running:
// an LLM's long answer was cut with an error event (UPSTREAM_RESET), counted against the
// version in a rollout, although README says a scale-down fails no request (S5). A retired
// replica now stops when its last request ends, however long, and the deployment may scale
// meanwhile; its port is freed then.

import t from 'tap';
import { adminClient, canBind, reapServers, waitFor } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 22570-22579 belong to this file.
const RANGE = { from: 22570, to: 22579 };

t.test('a scale-down under two long streams cuts neither', async (t) => {
  const gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    // A short grace: the stream outlives it by far.
    shutdown: { drain_delay_ms: 0, grace_ms: 1000 },
    deployments: [{
      model: 'long', version: '1', runtime: 'sim', replicas: 2, args: ['--protocol', 'openai', '--ttft-ms', '10', '--tokens', '40', '--token-ms', '250'],
      scale: { min_replicas: 1, max_replicas: 2, target_inflight_per_replica: 2, scale_up_window_s: 60, scale_down_window_s: 1 },
    }],
  });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  const ports = (await admin.deployment('long-1'))!.replicas.map((r) => r.port);
  const stream = async (): Promise<string> => {
    const r = await fetch(`${gw.url}/long-1/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'long', stream: true, messages: [{ role: 'user', content: 'a long answer' }] }),
    });
    return r.text();
  };
  // Two at once: least outstanding puts one on each replica.
  const streams = [stream(), stream()];
  const down = await waitFor(async () => ((await admin.get('/v1/deployments/long-1/events')).body.events as Array<{ action: string }>).find((e) => e.action === 'scale_down'), 20_000, 'a scale-down while they run');
  t.ok(down, 'the deployment scaled down under the streams');
  const texts = await Promise.all(streams);
  for (const text of texts) {
    t.notMatch(text, /event: error/, 'no stream was cut');
    t.match(text, /data: \[DONE\]\n\n$/, 'each ended whole');
    t.ok(text.split('\n').filter((l) => l.startsWith('data: {')).length >= 40, 'with every token');
  }
  await waitFor(async () => ((await admin.deployment('long-1'))!.replicas.length === 1 ? true : undefined), 10_000, 'the retired replica to stop once its stream ended');
  const kept = (await admin.deployment('long-1'))!.replicas[0]!.port;
  const freed = ports.filter((p) => p !== kept);
  await waitFor(async () => ((await Promise.all(freed.map(canBind))).every(Boolean) ? true : undefined), 5_000, 'its port to be free');
});
