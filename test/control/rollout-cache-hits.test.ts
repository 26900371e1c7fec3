// A canary is judged on its own answers: cache hits (the cache's answers, made without it)
// are not counted as its requests. Counted, repeated deterministic requests (temperature 0,
// MLflow /invocations) diluted the errors of a canary failing every answer it made to a few
// percent, and it was promoted.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { simConfig } from '../helpers/policy.js';
import { eventually, replicaPorts, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27910-27914 belong to this file.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27910, to: 27914 },
    log: { level: 'info', access: false },
    policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    deployments: [
      { model: 'ch', version: '1', runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1'] },
      { model: 'ch', version: '2', runtime: 'sim', args: ['--ttft-ms', '5', '--tokens', '1'] },
    ],
    traffic: { ch: { '1': 100 } },
  });
});
t.teardown(() => gw?.stop());

const ask = (path: string, prompt: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> =>
  httpRequest(`${gw.url}${path}/api/generate`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'ch', prompt, stream: false, options: { temperature: 0 } }),
  });

t.test('a canary failing every answer it makes is rolled back, however many cache hits it has', async (t) => {
  // The repeated request's answer is in the canary's cache; from now on the canary fails every answer.
  t.equal((await ask('/ch-2', 'same')).status, 200);
  t.equal((await ask('/ch-2', 'same')).headers['x-sluice-cache'], 'hit');
  const [canaryPort] = await replicaPorts(gw, 'ch-2');
  await simConfig(canaryPort!, { error_rate: 1 });

  const put = await httpRequest(`${gw.adminUrl}/v1/models/ch/rollout`, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ canary: '2', steps: [50, 100], interval_s: 2, min_requests: 3, failed_checks: 1 }),
  });
  t.equal(put.status, 201, put.body);
  // One request in 30 is new (a miss: the canary fails it), the others repeat (hits): 3% of
  // the canary's requests fail, under max_error_rate (5%), when hits count.
  let running = true;
  let n = 0;
  const load = Promise.all(Array.from({ length: 2 }, async () => {
    while (running) {
      const i = n++;
      await ask('/ch', i % 30 === 0 ? `new ${i}` : 'same');
      await sleep(10);
    }
  }));
  interface View { weights: Record<string, number>; rollout: { status: string; checks: Array<{ verdict: string; why: string; canary: { requests: number; errors: number } }> } }
  const view = await eventually(async () => {
    const m = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/models/ch`)).body) as View;
    return m.rollout.status === 'progressing' || m.rollout.status === 'waiting for traffic' ? undefined : m;
  }, 20_000, 'the rollout to end');
  running = false;
  await load;
  t.equal(view.rollout.status, 'rolled_back', JSON.stringify(view.rollout.checks));
  const last = view.rollout.checks.at(-1)!;
  t.match(last, { verdict: 'failed', why: /canary error rate 1 above/ });
  t.equal(last.canary.errors, last.canary.requests, 'the canary\'s requests are the ones it answered');
  t.same(view.weights, { '1': 100 });
});
