// The dashboard (/ui, in real Chromium) while a deployment has failed: a model server that
// printed a long traceback before it died leaves its last 20 lines in its replica's
// last_error. The replica row showed all of it on one line that does not wrap, which made
// the deployments table some 11,000 px wide: every deployment's figures (in flight, p99,
// errors, cost) and its buttons (logs, undeploy) were off the screen, in the very moment an
// operator needs them. The row shows the first line, the whole text on hover.

import t from 'tap';
import { dashboardFixture } from '../helpers/chromium.js';

t.setTimeout(120_000);

// Replica ports 29460-29469 belong to this file.
const RANGE = { from: 29460, to: 29469 };
const VIEWPORT = { width: 1400, height: 1000 };
const WAIT_MS = 30_000;
// A server that prints a long traceback, then dies before it listens.
const CRASH = 'for (let i = 0; i < 40; i++) console.log(`line ${i} of the traceback of a server that is about to fail, as wide as such lines are`); throw new Error("model file is corrupt")';

const ui = dashboardFixture(t, {
  ports: RANGE,
  log: { level: 'info', access: false },
  deployments: [{ model: 'ok', version: '1', runtime: 'sim' }],
}, { range: RANGE, waitMs: WAIT_MS, viewport: VIEWPORT });

t.test('a failed replica\'s long last error keeps the table on the screen', async (t) => {
  const failed = await ui.admin.post('/v1/deployments?wait=true', {
    model: 'broken', version: '1', runtime: 'command', command: [process.execPath, '-e', CRASH], port_env: 'PORT', start_timeout_ms: 10_000,
  });
  t.equal(failed.status, 502, 'the deployment failed');
  const view = (await ui.admin.get('/v1/deployments/broken-1')).body as { replicas: Array<{ last_error: string | null }> };
  const lastError = view.replicas[0]!.last_error!;
  t.ok(lastError.split('\n').length > 10, `its replica's last error has ${lastError.split('\n').length} lines`);

  await ui.page.goto(`${ui.gw.adminUrl}/ui`);
  await ui.page.waitForSelector('tr[data-replica="broken-1/0"] .state.failed');
  await ui.page.waitForSelector('tr[data-deployment="ok-1"] td[data-metric="p99"]');

  const width = await ui.page.evaluate(() => document.documentElement.scrollWidth);
  t.ok(width <= VIEWPORT.width, `the page is no wider than the window (${width} px)`);
  for (const id of ['ok-1', 'broken-1']) {
    for (const selector of [`tr[data-deployment="${id}"] td[data-metric="cost"]`, `tr[data-deployment="${id}"] button[data-action="logs"]`]) {
      const box = await ui.page.locator(selector).boundingBox();
      t.ok(box !== null && box.x + box.width <= VIEWPORT.width, `${selector} is on the screen (right edge ${box === null ? '-' : Math.round(box.x + box.width)} px)`);
    }
  }
  const shown = ui.page.locator('tr[data-replica="broken-1/0"] .why');
  t.equal(await shown.textContent(), `${lastError.slice(0, lastError.indexOf('\n'))} …`, 'the row shows the first line of the error');
  t.match(await shown.textContent(), /first error: Error: model file is corrupt/, 'which names the cause');
  t.equal(await shown.getAttribute('title'), lastError, 'and the whole error on hover');
  t.same(ui.pageErrors, [], 'no error in the page');
});
