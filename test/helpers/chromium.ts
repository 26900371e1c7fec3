// A real browser for the tests that need one (the dashboard at /ui, CORS from a page):
// Debian's chromium driven by playwright-core, launched one way for all of them so that a
// change of binary, flags or profile is made once. Each launch gets a fresh profile
// directory: nothing a page stored (a token, a cookie) carries over to another test or run.
// The dashboard's tests also share their gateway-and-tab setup (dashboardFixture), where
// nothing in it is particular to the file.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { Test } from 'tap';
import { adminClient, reapServers, type AdminClient } from './control.js';
import { startGateway, type Gateway } from './procs.js';

export const CHROMIUM = '/usr/bin/chromium';

// Headless, with no GPU and no sandbox to count on, and none of the browser's own background
// traffic (component updates, sync, first-run pages) beside what the page under test sends.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The size the dashboard's tests see the page at (and docs/dashboard.png was taken at). */
export const DASHBOARD_VIEWPORT = { width: 1400, height: 1000 } as const;

export interface LaunchOptions {
  /** Left out: playwright's default. */
  viewport?: { width: number; height: number };
  /** Bounds the launch itself. */
  timeoutMs?: number;
}

export function launchChromium(options: LaunchOptions = {}): Promise<BrowserContext> {
  return chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'sluice-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    ...(options.viewport === undefined ? {} : { viewport: { ...options.viewport } }),
    timeout: options.timeoutMs ?? 30_000,
  });
}

/**
 * The context's first tab, each of its waits bounded by `timeoutMs`. A script error in the
 * page fails no wait by itself; its message is pushed onto `errors`, which the test then
 * asserts is empty.
 */
export async function firstPage(browser: BrowserContext, timeoutMs: number, errors: string[]): Promise<Page> {
  const page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(timeoutMs);
  page.on('pageerror', (err) => errors.push(err.message));
  return page;
}

/** What a dashboard test's checks drive; each is there once `t.before` has run. */
export interface Dashboard {
  readonly gw: Gateway;
  readonly admin: AdminClient;
  readonly page: Page;
  /** Script errors in the page so far: each file ends by asserting there were none. */
  readonly pageErrors: string[];
}

/**
 * The setup the dashboard's tests share: one gateway (from `config`, its model servers in
 * `options.range`) and a tab on /ui's browser, for the tests of one file, started before them
 * and ended after them: the browser closed, the gateway stopped, and any model server still in
 * the range reaped, since a test that failed half-way may have left one.
 */
export function dashboardFixture(
  t: Test,
  config: Record<string, unknown>,
  options: { range: { from: number; to: number }; waitMs: number; viewport?: { width: number; height: number } },
): Dashboard {
  let gw: Gateway | undefined;
  let admin: AdminClient | undefined;
  let browser: BrowserContext | undefined;
  let page: Page | undefined;
  const pageErrors: string[] = [];
  t.teardown(async () => {
    await browser?.close();
    await gw?.stop();
    await reapServers([], options.range);
  });
  t.before(async () => {
    gw = await startGateway(config);
    admin = adminClient(gw.adminUrl);
    browser = await launchChromium({ viewport: options.viewport ?? DASHBOARD_VIEWPORT, timeoutMs: options.waitMs });
    page = await firstPage(browser, options.waitMs, pageErrors);
  });
  return {
    get gw() { return gw!; },
    get admin() { return admin!; },
    get page() { return page!; },
    pageErrors,
  };
}
