// A canary rolled out to replace a stable version that fails every request: the stable's
// errors come back in a millisecond, so its time to first byte is no baseline; compared
// with it, the healthy canary was "slower" and rolled back, all traffic returned to the
// version failing all of it. Its latency is now compared only with a stable version within
// the error limit itself.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { simConfig } from '../helpers/policy.js';
import { eventually, replicaPorts, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27920-27924 belong to this file.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27920, to: 27924 },
    log: { level: 'info', access: false },
    policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    deployments: [
      { model: 'fs', version: '1', runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1'] },
      { model: 'fs', version: '2', runtime: 'sim', args: ['--ttft-ms', '100', '--tokens', '1'] },
    ],
    traffic: { fs: { '1': 100 } },
  });
});
t.teardown(() => gw?.stop());

t.test('a healthy canary is not rolled back for being slower than a stable version\'s errors', async (t) => {
  const [stablePort] = await replicaPorts(gw, 'fs-1');
  await simConfig(stablePort!, { error_rate: 1 });
  const put = await httpRequest(`${gw.adminUrl}/v1/models/fs/rollout`, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ canary: '2', steps: [50, 100], interval_s: 1, min_requests: 5, failed_checks: 1 }),
  });
  t.equal(put.status, 201, put.body);
  let running = true;
  const load = Promise.all(Array.from({ length: 4 }, async () => {
    while (running) await httpRequest(`${gw.url}/fs/api/generate`, { method: 'POST', body: '{"model":"fs","prompt":"x","stream":false}', headers: { 'content-type': 'application/json' } });
  }));
  interface View { weights: Record<string, number>; stable: string; rollout: { status: string; finished_at: string | null; checks: Array<{ verdict: string; why: string; stable: { error_rate: number } }> } }
  const view = await eventually(async () => {
    const m = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/models/fs`)).body) as View;
    return m.rollout.finished_at !== null ? m : undefined;
  }, 20_000, 'the rollout to end');
  running = false;
  await load;
  t.equal(view.rollout.status, 'promoted', view.rollout.checks.map((c) => c.why).join('; '));
  t.ok(view.rollout.checks.some((c) => c.verdict === 'healthy' && c.stable.error_rate === 1), 'judged beside a stable failing every request');
  t.same(view.weights, { '2': 100 });
  t.equal(view.stable, '2');
});
