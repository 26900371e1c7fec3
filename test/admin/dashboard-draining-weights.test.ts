// The dashboard's weight sliders (/ui, in real Chromium) while one of the model's versions is
// being undeployed (draining, up to its grace: 30 s by default). The API refuses to weight
// a draining version (409, README "Traffic"), and "apply weights" sent every version the
// card lists, the draining one at 0 included: no weight of the model could be changed from
// the page until the drain ended. A draining version's slider is disabled and left out.

import { mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import t from 'tap';
import { adminClient, reapServers, waitFor, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 29500-29509 belong to this file.
const RANGE = { from: 29500, to: 29509 };
const CHROMIUM = '/usr/bin/chromium';
const BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 30_000;

let gw: Gateway | undefined;
let admin: AdminClient;
let browser: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];

t.teardown(async () => {
  await browser?.close();
  await gw?.stop();
  await reapServers([], RANGE);
});

t.before(async () => {
  gw = await startGateway({ ports: RANGE, log: { level: 'info', access: false } });
  admin = adminClient(gw.adminUrl);
  browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'sluice-chromium-')), {
    executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS, viewport: { width: 1400, height: 1000 }, timeout: WAIT_MS,
  });
  page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => pageErrors.push(err.message));
});

t.test('weights can be applied while a version drains', async (t) => {
  // Version 1 streams slowly: a stream in flight keeps it draining for the test's length.
  for (const [version, args] of [['1', ['--token-ms', '1000', '--tokens', '30']], ['2', []], ['3', []]] as const) {
    t.equal((await admin.post('/v1/deployments?wait=true', { model: 'dw', version, runtime: 'sim', args })).status, 201, `dw-${version} deployed`);
  }
  t.equal((await admin.request('PUT', '/v1/models/dw/traffic', { weights: { 1: 50, 2: 25, 3: 25 } })).status, 200, 'weights 50/25/25');

  const stream = request(`${gw!.url}/dw-1/api/generate`, { method: 'POST' });
  stream.on('error', () => undefined);
  stream.end(JSON.stringify({ model: 'dw', prompt: 'a long answer' }));
  await new Promise((resolve) => stream.once('response', resolve));
  t.teardown(() => {
    stream.destroy();
  });
  const undeploy = admin.del('/v1/deployments/dw-1?grace_ms=60000');
  await waitFor(async () => ((await admin.get('/v1/models/dw')).body.versions as Array<{ version: string; state: string }>).some((v) => v.version === '1' && v.state === 'draining'), 10_000, 'dw-1 draining');

  await page.goto(`${gw!.adminUrl}/ui`);
  await page.locator('.model[data-model="dw"] .state.draining').waitFor();
  t.ok(await page.getByRole('slider', { name: 'weight of dw-1' }).isDisabled(), 'the draining version\'s slider is disabled');
  await page.getByRole('slider', { name: 'weight of dw-3' }).fill('75');
  await page.getByRole('button', { name: 'apply weights of dw' }).click();
  await page.locator('ol[aria-label="events of dw"] li[data-action-kind="traffic"]').nth(1).waitFor();
  t.same((await admin.get('/v1/models/dw')).body.weights, { 2: 25, 3: 75 }, 'the weights the sliders set, the draining version left out');
  t.notOk(await page.locator('#error.shown').isVisible(), `no error shown (${await page.locator('#error-message').textContent()})`);

  stream.destroy();
  t.equal((await undeploy).status, 200, 'dw-1 undeployed once its stream ended');
  t.same(pageErrors, [], 'no error in the page');
});
