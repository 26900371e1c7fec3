// Two deployments whose routes would be one path: a deployment id (`/<model>-<version>/`)
// that is another model's name (its alias segment). The route table can serve only one of
// them, so the config file and the admin API both refuse the second, naming the field.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-shadow-test-'));

function refusal(yaml: string): ConfigError | null {
  const path = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, yaml);
  try {
    loadConfig(path, {});
    return null;
  } catch (err) {
    return err as ConfigError;
  }
}

t.test('the config file: a model named as another deployment\'s id is refused, in either order (the first of the two is named)', async (t) => {
  for (const [yaml, field] of [
    ['deployments:\n  - {model: demo, version: "1", runtime: sim}\n  - {model: demo-1, version: "2", runtime: sim}\n', 'deployments[0].version'],
    ['deployments:\n  - {model: demo-1, version: "2", runtime: sim}\n  - {model: demo, version: "1", runtime: sim}\n', 'deployments[0].model'],
  ] as const) {
    const err = refusal(yaml);
    t.ok(err instanceof ConfigError, 'refused');
    t.equal(err?.field, field);
    t.match(err?.message, /share the path \/demo-1\//);
  }
  t.equal(refusal('deployments:\n  - {model: demo, version: "1", runtime: sim}\n  - {model: demo, version: "2", runtime: sim}\n'), null, 'versions of one model do not collide');
});

t.test('the admin API: 409 naming the field, and nothing deployed', async (t) => {
  const gw = await startGateway({
    ports: { from: 19170, to: 19179 },
    deployments: [{ model: 'x-y', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:9'], health_check: { enabled: false } }],
  });
  t.teardown(() => gw.stop());
  const deploy = (body: Record<string, unknown>) => httpRequest(`${gw.adminUrl}/v1/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ runtime: 'remote', urls: ['http://127.0.0.1:9'], health_check: { enabled: false }, ...body }) });
  const alias = await deploy({ model: 'x-y-1', version: '2' });
  t.equal(alias.status, 409, 'a model named x-y-1 while deployment x-y-1 exists');
  t.match(JSON.parse(alias.body), { error: { code: 'SLUICE_ERR_CONFLICT', message: /^model: / } });
  const id = await deploy({ model: 'x', version: 'y' });
  t.equal(id.status, 409, 'deployment x-y while model x-y exists');
  t.match(JSON.parse(alias.body).error.request_id, /./, 'with a request id');
  const list = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/deployments`)).body) as { deployments: Array<{ id: string }> };
  t.same(list.deployments.map((d) => d.id), ['x-y-1'], 'nothing was deployed');
  t.equal((await deploy({ model: 'x-y', version: '2' })).status, 201, 'another version of the model is fine');
});
