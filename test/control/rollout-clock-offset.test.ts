// A rollout analysed by one instance counts the requests of another whose clock is behind:
// the instances stamp the counts they share by Redis's clock, not their own, so a few
// seconds of drift do not make one instance's counts look stale and leave them out.

import { join } from 'node:path';
import t from 'tap';
import { adminClient, sharedRedisInstances } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { eventually } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27410-27414 belong to this file: Redis 27410, gateway A 27411 (admin 27412), B 27413 (admin 27414).
const REDIS_PORT = 27410;
interface Rollout { status: string; checks: Array<{ canary: { requests: number }; why: string }> }

/** A gateway whose model rr's two versions are remote replicas: its own admin port (its /healthz), so no other port is used. */
const gateway = sharedRedisInstances(t, REDIS_PORT, {
  deployments: ['1', '2'].map((version) => ({
    model: 'rr', version, runtime: 'remote', urls: ['http://127.0.0.1:27412'], health_check: { enabled: false }, policies: { cache: { enabled: false } },
  })),
  traffic: { rr: { '1': 100 } },
});

t.test('the requests through an instance whose clock is 5 s behind count in a rollout analysed by another', async (t) => {
  const a = await gateway(27411);
  const behind = await gateway(27413, { NODE_OPTIONS: `--require ${join(import.meta.dirname, '../fixtures/clock-offset.cjs')}`, CLOCK_OFFSET_MS: '-5000' });
  const started = await adminClient(a.adminUrl).request('PUT', '/v1/models/rr/rollout', { canary: '2', steps: [50, 100], interval_s: 1, min_requests: 10 });
  t.equal(started.status, 201, 'a rollout started through A, which analyses it');
  t.ok(behind.lines.some((l) => l.includes('"time":"') && Date.parse((JSON.parse(l) as { time: string }).time) < Date.now() - 4_000), 'B logs times 5 s behind: its clock is off');

  const counted = await eventually(async () => {
    for (let i = 0; i < 10; i++) await httpRequest(`${behind.url}/rr/healthz`, { timeoutMs: 5_000 });
    const rollout = (await adminClient(a.adminUrl).get('/v1/models/rr')).body as { rollout: Rollout };
    return rollout.rollout.checks.find((c) => c.canary.requests > 0);
  }, 30_000, 'a check that counts the canary requests made through the instance whose clock is behind');
  t.ok(counted.canary.requests > 0, `a check counts them: ${counted.why}`);
});
