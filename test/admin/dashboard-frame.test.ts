// The dashboard may not be shown inside another site's page. Without an admin token (the
// default: loopback only) the page at /ui works for whoever opens it, and its requests to
// the admin API are same-origin (Sec-Fetch-Site: same-origin, its own Origin) even when
// another site's page frames it: that page could lay its own content over the dashboard's
// undeploy and deploy buttons and have the user click them (clickjacking), which the
// admin API's cross-site checks cannot see (W9). Every admin answer now says no page may
// frame it (X-Frame-Options: DENY, CSP frame-ancestors 'none'); seen in a real Chromium.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrowserContext } from 'playwright-core';
import t from 'tap';
import { launchChromium } from '../helpers/chromium.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Model-server ports 23400-23409 belong to this file (it deploys none).
const RANGE = { from: 23400, to: 23409 };

let gw: Gateway;
let evil: Server;
let browser: BrowserContext | undefined;

t.before(async () => {
  gw = await startGateway({ ports: RANGE, log: { level: 'info', access: false }, deployments: [] });
  // Another site's page (127.0.0.2: loopback, another origin), framing the dashboard.
  evil = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' })
    .end(`<!doctype html><title>evil</title><iframe id="f" src="${gw.adminUrl}/ui" width="800" height="600"></iframe>`));
  await new Promise<void>((r) => evil.listen(0, '127.0.0.2', r));
});
t.teardown(async () => {
  await browser?.close();
  await gw?.stop();
  evil?.closeAllConnections();
  await new Promise((r) => evil?.close(r));
});

t.test('every admin answer forbids framing', async (t) => {
  for (const path of ['/ui', '/docs', '/v1/deployments', '/nope']) {
    const r = await httpRequest(`${gw.adminUrl}${path}`);
    t.equal(r.headers['x-frame-options'], 'DENY', `${path}: X-Frame-Options`);
    t.equal(r.headers['content-security-policy'], "frame-ancestors 'none'", `${path}: CSP frame-ancestors`);
  }
});

t.test("another site's page cannot show the dashboard in a frame", async (t) => {
  browser = await launchChromium();
  const tab = browser.pages()[0] ?? await browser.newPage();
  await tab.goto(`http://127.0.0.2:${(evil.address() as AddressInfo).port}/`);
  // Give the frame its time to load, or to be blocked.
  await tab.waitForTimeout(1500);
  const frame = tab.frames().find((f) => f !== tab.mainFrame());
  t.ok(frame, 'the frame exists');
  const title = await frame!.evaluate(() => document.title).catch((err: Error) => `unreadable: ${err.message}`);
  t.not(title, 'sluice dashboard', 'the dashboard did not load in it');
  t.notOk(frame!.url().startsWith(gw.adminUrl) && title === 'sluice dashboard');
});
