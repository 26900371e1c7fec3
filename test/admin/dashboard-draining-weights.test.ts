// The dashboard's weight sliders (/ui, in real Chromium) while one of the model's versions is
// being undeployed (draining, up to its grace: 30 s by default). The API refuses to weight
// a draining version (409, README "Traffic"), and "apply weights" sent every version the
// card lists, the draining one at 0 included: no weight of the model could be changed from
// the page until the drain ended. A draining version's slider is disabled and left out.

import { request } from 'node:http';
import t from 'tap';
import { dashboardFixture } from '../helpers/chromium.js';
import { waitFor } from '../helpers/control.js';

t.setTimeout(120_000);

// Replica ports 29500-29509 belong to this file.
const RANGE = { from: 29500, to: 29509 };
const WAIT_MS = 30_000;

const ui = dashboardFixture(t, { ports: RANGE, log: { level: 'info', access: false } }, { range: RANGE, waitMs: WAIT_MS });

t.test('weights can be applied while a version drains', async (t) => {
  // Version 1 streams slowly: a stream in flight keeps it draining for the test's length.
  for (const [version, args] of [['1', ['--token-ms', '1000', '--tokens', '30']], ['2', []], ['3', []]] as const) {
    t.equal((await ui.admin.post('/v1/deployments?wait=true', { model: 'dw', version, runtime: 'sim', args })).status, 201, `dw-${version} deployed`);
  }
  t.equal((await ui.admin.request('PUT', '/v1/models/dw/traffic', { weights: { 1: 50, 2: 25, 3: 25 } })).status, 200, 'weights 50/25/25');

  const stream = request(`${ui.gw.url}/dw-1/api/generate`, { method: 'POST' });
  stream.on('error', () => undefined);
  stream.end(JSON.stringify({ model: 'dw', prompt: 'a long answer' }));
  await new Promise((resolve) => stream.once('response', resolve));
  t.teardown(() => {
    stream.destroy();
  });
  const undeploy = ui.admin.del('/v1/deployments/dw-1?grace_ms=60000');
  await waitFor(async () => ((await ui.admin.get('/v1/models/dw')).body.versions as Array<{ version: string; state: string }>).some((v) => v.version === '1' && v.state === 'draining'), 10_000, 'dw-1 draining');

  await ui.page.goto(`${ui.gw.adminUrl}/ui`);
  await ui.page.locator('.model[data-model="dw"] .state.draining').waitFor();
  t.ok(await ui.page.getByRole('slider', { name: 'weight of dw-1' }).isDisabled(), 'the draining version\'s slider is disabled');
  await ui.page.getByRole('slider', { name: 'weight of dw-3' }).fill('75');
  await ui.page.getByRole('button', { name: 'apply weights of dw' }).click();
  await ui.page.locator('ol[aria-label="events of dw"] li[data-action-kind="traffic"]').nth(1).waitFor();
  t.same((await ui.admin.get('/v1/models/dw')).body.weights, { 2: 25, 3: 75 }, 'the weights the sliders set, the draining version left out');
  t.notOk(await ui.page.locator('#error.shown').isVisible(), `no error shown (${await ui.page.locator('#error-message').textContent()})`);

  stream.destroy();
  t.equal((await undeploy).status, 200, 'dw-1 undeployed once its stream ended');
  t.same(ui.pageErrors, [], 'no error in the page');
});
