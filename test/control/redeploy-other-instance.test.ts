// Undeployed through one instance and deployed anew (another spec) through another sharing
// the Redis, at once: the second instance has not read the removal yet, and stops its copy
// then, rather than answering 409 "already exists" until its next read. Behind a load
// balancer the two calls land on any instance.

import t from 'tap';
import { adminClient, sharedRedisInstances } from '../helpers/control.js';
import { eventually } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27430-27434 belong to this file: Redis 27430, gateway A 27431 (admin 27432), B 27433 (admin 27434).
const REDIS_PORT = 27430;
const gateway = sharedRedisInstances(t, REDIS_PORT, { deployments: [] });

// A remote replica: gateway A's admin port (its /healthz), so no other port is used.
const spec = (timeoutMs: number): Record<string, unknown> => ({
  model: 'rd', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:27432'], health_check: { enabled: false },
  policies: { total_timeout_ms: timeoutMs },
});

interface View { state: string; policies: { total_timeout_ms: number } }

t.test('undeploy through A, deploy anew through B at once: B takes it', async (t) => {
  const a = adminClient((await gateway(27431)).adminUrl);
  const b = adminClient((await gateway(27433)).adminUrl);
  t.equal((await a.post('/v1/deployments?wait=true', spec(1000))).status, 201, 'rd-1 deployed through A');
  await eventually(async () => ((await b.get('/v1/deployments/rd-1')).body as View).state === 'ready' || undefined, 15_000, 'B to run rd-1');

  t.equal((await a.del('/v1/deployments/rd-1')).status, 200, 'undeployed through A');
  const again = await b.post('/v1/deployments?wait=true', spec(2000));
  t.equal(again.status, 201, `deployed anew through B at once: ${again.text.slice(0, 160)}`);

  for (const [name, admin] of [['A', a], ['B', b]] as const) {
    const view = await eventually(async () => {
      const v = (await admin.get('/v1/deployments/rd-1')).body as View;
      return v.state === 'ready' && v.policies?.total_timeout_ms === 2000 ? v : undefined;
    }, 15_000, `${name} to run the new spec`);
    t.equal(view.policies.total_timeout_ms, 2000, `${name} runs the new spec`);
  }
  t.equal((await b.post('/v1/deployments', spec(3000))).status, 409, 'a deploy of an id that is deployed is still a conflict');
});
