// A traffic change, a promote or a rollout through one instance for a version another
// instance sharing the Redis deployed a moment ago: the version is in the desired state,
// so it is taken, not refused with "has no version" until this instance has read it. Behind
// a load balancer, a deploy and the weights that follow land on any instance.

import t from 'tap';
import { adminClient, sharedRedisInstances } from '../helpers/control.js';
import { eventually } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27420-27424 belong to this file: Redis 27420, gateway A 27421 (admin 27422), B 27423 (admin 27424).
const REDIS_PORT = 27420;
// Remote replicas: gateway A's admin port (its /healthz), so no other port is used.
const remote = (version: string): Record<string, unknown> => ({
  model: 'nv', version, runtime: 'remote', urls: ['http://127.0.0.1:27422'], health_check: { enabled: false },
});

const gateway = sharedRedisInstances(t, REDIS_PORT, { deployments: [remote('1')] });

interface ModelView { weights: Record<string, number> | null; stable: string | null; versions: Array<{ version: string; state: string }> }

t.test('weights, promote and a rollout through A for versions just deployed through B', async (t) => {
  const a = adminClient((await gateway(27421)).adminUrl);
  const b = adminClient((await gateway(27423)).adminUrl);

  t.equal((await b.post('/v1/deployments?wait=true', remote('2'))).status, 201, 'nv-2 deployed through B');
  const weights = await a.request('PUT', '/v1/models/nv/traffic', { weights: { '1': 50, '2': 50 } });
  t.equal(weights.status, 200, `weights with version 2 through A at once: ${weights.text.slice(0, 160)}`);

  t.equal((await b.post('/v1/deployments?wait=true', remote('3'))).status, 201, 'nv-3 deployed through B');
  const promoted = await a.post('/v1/models/nv/promote', { version: '3' });
  t.equal(promoted.status, 200, `version 3 promoted through A at once: ${promoted.text.slice(0, 160)}`);

  t.equal((await b.post('/v1/deployments?wait=true', remote('4'))).status, 201, 'nv-4 deployed through B');
  const rollout = await a.request('PUT', '/v1/models/nv/rollout', { canary: '4', steps: [50, 100], interval_s: 60 });
  t.equal(rollout.status, 201, `a rollout of version 4 through A at once: ${rollout.text.slice(0, 160)}`);
  t.equal((await a.request('DELETE', '/v1/models/nv/rollout')).status, 200, 'aborted');

  const unknown = await a.request('PUT', '/v1/models/nv/traffic', { weights: { '1': 50, '9': 50 } });
  t.equal(unknown.status, 400, 'a version deployed nowhere is still refused');
  t.match(unknown.body, { error: { code: 'SLUICE_ERR_INVALID_FIELD', message: 'weights.9: nv has no version 9' } }, 'naming it');

  for (const [name, admin] of [['A', a], ['B', b]] as const) {
    const view = await eventually(async () => {
      const v = (await admin.get('/v1/models/nv')).body as ModelView;
      return v.stable === '3' && v.versions.some((x) => x.version === '4' && x.state === 'ready') ? v : undefined;
    }, 15_000, `${name} to show the promote and every version`);
    t.same(view.weights, { '3': 100 }, `${name} routes by the same weights`);
  }
});
