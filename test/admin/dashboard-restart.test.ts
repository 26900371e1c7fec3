// The dashboard (/ui, in real Chromium) across a gateway restart: the page reconnects to
// the new process by itself, whose counts begin again at zero. Its rates must come from the
// new process's stats alone: against the old process's counts they were negative
// (requests/s -3.2 for some 10 s) until those left the rate window.

import type { BrowserContext, Page } from 'playwright-core';
import t from 'tap';
import { DASHBOARD_VIEWPORT, firstPage, launchChromium } from '../helpers/chromium.js';
import { gwRequest } from '../helpers/control.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 19570-19579 belong to this file: 19570 the gateway, 19571 its admin API (the same
// for both processes, as after a restart), 19572-19579 the model servers.
const CONFIG = {
  listen: { host: '127.0.0.1', port: 19570 },
  admin: { host: '127.0.0.1', port: 19571 },
  ports: { from: 19572, to: 19579 },
  workers: 2,
  log: { level: 'info', access: false },
  deployments: [{ model: 'rs', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'] }],
};
const WAIT_MS = 30_000;

let gw: Gateway | undefined;
let browser: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];

t.teardown(async () => {
  await browser?.close();
  await gw?.stop();
});

t.before(async () => {
  gw = await startGateway(CONFIG);
  browser = await launchChromium({ viewport: DASHBOARD_VIEWPORT, timeoutMs: WAIT_MS });
  page = await firstPage(browser, WAIT_MS, pageErrors);
});

async function send(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await gwRequest(`${gw!.url}/rs-1/api/tags`, { timeoutMs: 10_000 });
    if (r.status !== 200) throw new Error(`rs-1 answered ${r.status}`);
  }
}

/** The deployment row's metric cells, by name. */
async function cells(): Promise<Record<string, string>> {
  return page.$$eval('tr[data-deployment="rs-1"] [data-metric]', (tds) => Object.fromEntries(tds.map((td) => [td.getAttribute('data-metric')!, td.textContent ?? ''])));
}

t.test('after the gateway restarts, the page shows no negative rate', async (t) => {
  await page.goto(`${gw!.adminUrl}/ui`);
  await page.waitForSelector('tr[data-deployment="rs-1"]');
  await send(60);
  await eventually(async () => (Number((await cells())['rps']) > 0 ? true : undefined), WAIT_MS, 'a positive requests/s before the restart');
  // Then 0.0 once the rate window (10 s) holds only stats taken after those requests: all
  // of it has the first process's full counts, which the new process's are below.
  await eventually(async () => ((await cells())['rps'] === '0.0' ? true : undefined), WAIT_MS, 'requests/s back to 0.0');

  await gw!.stop();
  gw = await startGateway(CONFIG);
  await send(3);
  await eventually(async () => ((await page.textContent('#status')) === 'live' ? true : undefined), WAIT_MS, 'the page to reconnect');

  // Every stats event of the new process for a few seconds (one a second): the rates must
  // never go below zero. Read whenever the page's "updated" line changes.
  const seen: Array<Record<string, string>> = [];
  let last = await page.textContent('#updated');
  while (seen.length < 4) {
    const now = await eventually(async () => {
      const u = await page.textContent('#updated');
      return u !== last ? u : undefined;
    }, WAIT_MS, 'the next stats event');
    last = now;
    seen.push(await cells());
  }
  const negative = seen.filter((c) => ['rps', 'tokens', 'errors'].some((m) => (c[m] ?? '').startsWith('-') && c[m] !== '-'));
  t.same(negative, [], `no negative rate in ${JSON.stringify(seen)}`);
  t.ok(seen.some((c) => c['rps'] !== '-'), 'the rates are shown again');
  t.same(pageErrors, [], 'no error on the page');
});
