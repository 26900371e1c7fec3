// The dashboard (/ui, in real Chromium) while a deployment has failed: a model server that
// printed a long traceback before it died leaves its last 20 lines in its replica's
// last_error. The replica row showed all of it on one line that does not wrap, which made
// the deployments table some 11,000 px wide: every deployment's figures (in flight, p99,
// errors, cost) and its buttons (logs, undeploy) were off the screen, in the very moment an
// operator needs them. The row shows the first line, the whole text on hover.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import t from 'tap';
import { adminClient, reapServers, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 29460-29469 belong to this file.
const RANGE = { from: 29460, to: 29469 };
const CHROMIUM = '/usr/bin/chromium';
const BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const VIEWPORT = { width: 1400, height: 1000 };
const WAIT_MS = 30_000;
// A server that prints a long traceback, then dies before it listens.
const CRASH = 'for (let i = 0; i < 40; i++) console.log(`line ${i} of the traceback of a server that is about to fail, as wide as such lines are`); throw new Error("model file is corrupt")';

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
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [{ model: 'ok', version: '1', runtime: 'sim' }],
  });
  admin = adminClient(gw.adminUrl);
  browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'sluice-chromium-')), {
    executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS, viewport: VIEWPORT, timeout: WAIT_MS,
  });
  page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => pageErrors.push(err.message));
});

t.test('a failed replica\'s long last error keeps the table on the screen', async (t) => {
  const failed = await admin.post('/v1/deployments?wait=true', {
    model: 'broken', version: '1', runtime: 'command', command: [process.execPath, '-e', CRASH], port_env: 'PORT', start_timeout_ms: 10_000,
  });
  t.equal(failed.status, 502, 'the deployment failed');
  const view = (await admin.get('/v1/deployments/broken-1')).body as { replicas: Array<{ last_error: string | null }> };
  const lastError = view.replicas[0]!.last_error!;
  t.ok(lastError.split('\n').length > 10, `its replica's last error has ${lastError.split('\n').length} lines`);

  await page.goto(`${gw!.adminUrl}/ui`);
  await page.waitForSelector('tr[data-replica="broken-1/0"] .state.failed');
  await page.waitForSelector('tr[data-deployment="ok-1"] td[data-metric="p99"]');

  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  t.ok(width <= VIEWPORT.width, `the page is no wider than the window (${width} px)`);
  for (const id of ['ok-1', 'broken-1']) {
    for (const selector of [`tr[data-deployment="${id}"] td[data-metric="cost"]`, `tr[data-deployment="${id}"] button[data-action="logs"]`]) {
      const box = await page.locator(selector).boundingBox();
      t.ok(box !== null && box.x + box.width <= VIEWPORT.width, `${selector} is on the screen (right edge ${box === null ? '-' : Math.round(box.x + box.width)} px)`);
    }
  }
  const shown = page.locator('tr[data-replica="broken-1/0"] .why');
  t.equal(await shown.textContent(), `${lastError.slice(0, lastError.indexOf('\n'))} …`, 'the row shows the first line of the error');
  t.match(await shown.textContent(), /first error: Error: model file is corrupt/, 'which names the cause');
  t.equal(await shown.getAttribute('title'), lastError, 'and the whole error on hover');
  t.same(pageErrors, [], 'no error in the page');
});
