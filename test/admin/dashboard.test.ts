// The dashboard (/ui) in a real browser (Debian's chromium driven by playwright-core)
// against real gateways: without an admin token the page opens at once; with one, it asks
// for the token and keeps it in the tab only; a model deployed from its form becomes ready in the table, with replicas
// and live stats; two versions of it split the alias as the sliders say, and the requests
// follow; promote and rollback move the traffic and their events appear; a rollout started
// from its form shows its progress and is aborted from the page; a wrong deploy
// shows the API's error; the log tail shows the model server's output; undeploy removes it.
// Then the live feed ends cleanly when the gateway stops. A screenshot of the populated
// page is written to a temp dir (docs/dashboard.png is one of them).

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import t from 'tap';
import { DASHBOARD_VIEWPORT, firstPage, launchChromium } from '../helpers/chromium.js';
import { adminClient, assertNoServersLeft, gwRequest, PidLog, reapServers, sleep, type AdminClient } from '../helpers/control.js';
import { pool } from '../helpers/policy.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(240_000);

// Ports 19020-19039 belong to this file (the model servers the gateway starts).
const RANGE = { from: 19020, to: 19039 };
const TOKEN = 'dashboard-test-token';
/** Every wait on the page is bounded by this (a deployment's start included). */
const WAIT_MS = 30_000;

const pids = new PidLog();
let gw: Gateway | undefined;
let admin: AdminClient;
let browser: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];

t.teardown(async () => {
  await browser?.close();
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.before(async () => {
  gw = await startGateway({
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    ports: RANGE,
    workers: 2,
    log: { level: 'info', access: false },
  }, { SLUICE_ADMIN_TOKEN: TOKEN });
  admin = adminClient(gw.adminUrl, TOKEN);
  browser = await launchChromium({ viewport: DASHBOARD_VIEWPORT, timeoutMs: WAIT_MS });
  page = await firstPage(browser, WAIT_MS, pageErrors);
});

/** The version that answered each of `n` requests to the model's alias (x-sluice-version), counted. */
async function aliasVersions(model: string, n: number): Promise<Record<string, number>> {
  const replies = await pool(n, 5, () => gwRequest(`${gw!.url}/${model}/_sim/echo`, { timeoutMs: 10_000 }));
  const out: Record<string, number> = {};
  for (const r of replies) {
    const k = r.status === 200 ? String(r.headers['x-sluice-version']) : `status ${r.status}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Polls the alias until a batch of 20 requests all reach `version` (the route tables follow within about a second). */
async function aliasFollows(model: string, version: string): Promise<Record<string, number>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const counts = await aliasVersions(model, 20);
    if (counts[version] === 20 || Date.now() > deadline) return counts;
    await sleep(100);
  }
}

const row = (id: string): string => `tr[data-deployment="${id}"]`;

/** Waits until the deployment's row in the page shows `state`. */
async function rowState(id: string, state: string): Promise<void> {
  await page.waitForFunction(([sel, s]) => document.querySelector(`${sel} .state`)?.textContent === s, [row(id), state] as const, { timeout: WAIT_MS });
}

/** Prices, so that the gateway counts tokens and costs; the simulator streams a token every 2 ms. */
const MORE_FIELDS = JSON.stringify({ cost: { per_1k_input_tokens: 0.01, per_1k_output_tokens: 0.03, per_replica_hour: 0.9 }, args: ['--token-ms', '2'] });

async function deployFromForm(model: string, version: string): Promise<void> {
  await page.getByLabel('model', { exact: true }).fill(model);
  await page.getByLabel('version', { exact: true }).fill(version);
  await page.getByLabel('runtime').selectOption('sim');
  await page.getByLabel('replicas').fill('1');
  await page.getByLabel('more fields (JSON)').fill(MORE_FIELDS);
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
}

t.test('without an admin token (loopback only), the page opens at once', async (t) => {
  const open = await startGateway({ ports: RANGE, log: { level: 'info', access: false } });
  try {
    const tab = await browser!.newPage();
    await tab.goto(`${open.adminUrl}/ui`);
    await tab.waitForFunction(() => document.getElementById('status')?.textContent === 'live', undefined, { timeout: WAIT_MS });
    t.equal(await tab.locator('#login').isVisible(), false, 'no token form');
    t.equal(await tab.locator('#forget').isVisible(), false, 'nothing to forget');
    t.match(await tab.locator('#deployments').textContent(), /nothing deployed/);
    await tab.close();
  } finally {
    await open.stop();
  }
});

t.test('the page asks for the admin token, keeps it in the tab and never in a URL', async (t) => {
  const res = await page.goto(`${gw!.adminUrl}/ui`);
  t.equal(res?.status(), 200, 'GET /ui needs no token');
  await page.locator('#login').waitFor({ state: 'visible' });
  t.equal(await page.locator('#app').isVisible(), false, 'nothing but the token form before the token');
  await page.getByLabel('admin token').fill('not-the-token');
  await page.getByRole('button', { name: 'Open' }).click();
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'the admin token was refused');
  t.pass('a wrong token is refused (401) and the form asks again');
  await page.getByLabel('admin token').fill(TOKEN);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'live');
  t.pass('the live feed is open');
  t.equal(await page.evaluate(() => sessionStorage.getItem('sluice.admin-token')), TOKEN, 'kept in sessionStorage');
  t.notMatch(page.url(), TOKEN, 'not in the URL');
  t.match(await page.locator('#deployments').textContent(), /nothing deployed/);
});

t.test('deploy from the form: the deployment becomes ready in the table, with its replica', async (t) => {
  await deployFromForm('dash', '1');
  await rowState('dash-1', 'ready');
  const view = await admin.deployment('dash-1');
  pids.note(view);
  t.equal(view?.source, 'api', 'deployed through the admin API');
  t.equal(view?.state, 'ready');
  const costs = (await admin.get('/v1/costs')).body as { deployments: Array<{ id: string; prices: Record<string, number> }> };
  t.equal(costs.deployments.find((d) => d.id === 'dash-1')?.prices['per_1k_output_tokens'], 0.03, 'with the form\'s more fields (its prices)');
  const replica = view!.replicas[0]!;
  const replicaRow = page.locator(`tr[data-replica="${replica.id}"]`);
  t.match(await replicaRow.textContent(), new RegExp(`port ${replica.port}.*pid ${replica.pid}.*ready.*restarts 0 · breaker closed`), 'the replica row: port, pid, state, restarts, breaker');

  await deployFromForm('dash', '2');
  await rowState('dash-2', 'ready');
  pids.note(await admin.deployment('dash-2'));
  t.pass('a second version, ready');
  await page.locator('.model[data-model="dash"] input[type=range]').nth(1).waitFor();
  t.equal(await page.locator('.model[data-model="dash"] input[type=range]').count(), 2, 'the model card has a slider per version');
});

t.test('a deploy the API refuses shows its error', async (t) => {
  await page.getByLabel('model', { exact: true }).fill('dash');
  await page.getByLabel('version', { exact: true }).fill('not a version');
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  await page.locator('#error').waitFor({ state: 'visible' });
  t.equal(await page.locator('#error-code').textContent(), 'SLUICE_ERR_INVALID_FIELD');
  t.match(await page.locator('#error-message').textContent(), /^version: /, 'the message names the field');
  t.match(await page.locator('#error-request').textContent(), /^[0-9a-f-]{36}$/, 'and the request id');
  await page.getByRole('button', { name: 'dismiss' }).click();
  t.equal(await page.locator('#error').isVisible(), false, 'dismissed');
});

t.test('promote, sliders, rollback: the alias follows and the events appear', async (t) => {
  await page.getByRole('button', { name: 'promote dash-1' }).click();
  await page.waitForFunction(() => /stable 1/.test(document.querySelector('.model[data-model="dash"] h3')?.textContent ?? ''));
  t.same(await aliasFollows('dash', '1'), { 1: 20 }, 'promoted: every alias request reaches version 1');
  await page.locator('ol[aria-label="events of dash"] li[data-action-kind="promote"]').waitFor();
  t.pass('the promote event is listed');

  // Move the sliders: version 2 up to 100, version 1 down to 0, then apply.
  await page.getByRole('slider', { name: 'weight of dash-2' }).press('End');
  await page.getByRole('slider', { name: 'weight of dash-1' }).press('Home');
  t.equal(await page.getByRole('slider', { name: 'weight of dash-2' }).inputValue(), '100');
  t.equal(await page.getByRole('slider', { name: 'weight of dash-1' }).inputValue(), '0');
  await page.getByRole('button', { name: 'apply weights of dash' }).click();
  await page.locator('ol[aria-label="events of dash"] li[data-action-kind="traffic"]').waitFor();
  t.same((await admin.get('/v1/models/dash')).body.weights, { 1: 0, 2: 100 }, 'the weights the sliders set');
  t.same(await aliasFollows('dash', '2'), { 2: 20 }, 'the alias follows: every request reaches version 2');

  // Halfway: both versions answer.
  await page.getByRole('slider', { name: 'weight of dash-1' }).fill('50');
  await page.getByRole('slider', { name: 'weight of dash-2' }).fill('50');
  await page.getByRole('button', { name: 'apply weights of dash' }).click();
  await page.waitForFunction(() => document.querySelectorAll('ol[aria-label="events of dash"] li[data-action-kind="traffic"]').length === 2);
  const split = await aliasVersions('dash', 200);
  // Version 1 ~ Binomial(200, 0.5): mean 100, sd 7; 50..150 is 7 sd.
  t.ok((split['1'] ?? 0) >= 50 && (split['2'] ?? 0) >= 50 && (split['1'] ?? 0) + (split['2'] ?? 0) === 200, `50/50: both versions answer (${JSON.stringify(split)})`);

  await page.getByRole('button', { name: 'rollback dash' }).click();
  await page.locator('ol[aria-label="events of dash"] li[data-action-kind="rollback"]').waitFor();
  t.pass('the rollback event appears');
  t.same(await aliasFollows('dash', '1'), { 1: 20 }, 'rolled back: every request reaches the stable version 1');
  t.equal(await page.getByRole('slider', { name: 'weight of dash-1' }).inputValue(), '100', 'the sliders show the rolled-back weights');
});

t.test('start a rollout from the page, and see its progress', async (t) => {
  t.equal(await page.getByLabel('canary version of dash').inputValue(), '2', 'the form offers the version that is not stable');
  // Steps that do not rise: the API's 400 shows, naming the field, and nothing starts.
  await page.getByLabel('rollout steps of dash').fill('30, 20');
  await page.getByRole('button', { name: 'start rollout of dash' }).click();
  await page.locator('#error').waitFor({ state: 'visible' });
  t.equal(await page.locator('#error-code').textContent(), 'SLUICE_ERR_INVALID_FIELD');
  t.match(await page.locator('#error-message').textContent(), /^steps/, 'the message names the field');
  t.equal((await admin.get('/v1/models/dash')).body.rollout?.status === 'progressing', false, 'no rollout started');
  await page.getByRole('button', { name: 'dismiss' }).click();
  // Slow on purpose (a step every 10 minutes): the page is watched at its first step.
  t.equal(await page.getByLabel('rollout steps of dash').inputValue(), '30, 20', 'what was typed is kept across re-renders');
  await page.getByLabel('rollout steps of dash').fill('30, 60, 100');
  await page.getByLabel('rollout interval of dash').fill('600');
  await page.getByRole('button', { name: 'start rollout of dash' }).click();
  const started = await eventually(async () => {
    const r = (await admin.get('/v1/models/dash')).body.rollout;
    return r?.canary === '2' ? r : undefined;
  }, 10_000, 'the rollout to start');
  t.match(started, { canary: '2', stable: '1', spec: { steps: [30, 60, 100], interval_s: 600 } }, 'the rollout the form asked for');
  const progress = page.getByRole('progressbar', { name: 'rollout of dash' });
  await progress.waitFor();
  t.match(await page.locator('.model[data-model="dash"] .rollout').textContent(), /rollout of 2 against 1: (progressing|waiting for traffic) step 1\/3, canary at 30%/);
  t.equal(await progress.getAttribute('value'), '30', 'the progress bar at the first step');
  t.equal(await page.getByRole('button', { name: 'abort rollout of dash' }).count(), 1, 'an abort button while it runs');
});

t.test('live stats: the rate of the requests sent shows in the table', async (t) => {
  // Requests keep coming while the page is watched: the feed sends stats every second, rates are over 10 s.
  const sending = { on: true };
  const load = (async () => {
    while (sending.on) await aliasVersions('dash', 10);
  })();
  try {
    await page.waitForFunction((sel) => Number(document.querySelector(`${sel} [data-metric="rps"]`)?.textContent) > 0, row('dash-1'), { timeout: 10_000 });
    t.pass(`dash-1 shows ${await page.locator(`${row('dash-1')} [data-metric="rps"]`).textContent()} requests/s`);
  } finally {
    sending.on = false;
    await load;
  }
  t.match(await page.locator(`${row('dash-1')} [data-metric="p50"]`).textContent(), /^\d+\.\d$/, 'and a p50');
  t.match(await page.locator(`${row('dash-1')} [data-metric="errors"]`).textContent(), /^0\.0%$/, 'and no errors');
  t.match(await page.locator(`${row('dash-1')} [data-metric="inflight"]`).textContent(), /^\d+$/, 'and its requests in flight now');
  t.equal(await page.locator(`${row('dash-1')} [data-metric="queued"]`).textContent(), '0', 'none waiting for a replica');
});

t.test('the log tail shows the model server\'s output', async (t) => {
  await page.getByRole('button', { name: 'logs of dash-1' }).click();
  await page.waitForFunction(() => (document.getElementById('logs')?.textContent ?? '').includes('"event":"listening"'));
  t.match(await page.locator('#logs').textContent(), /dash-1\/0 +\{"event":"listening","port":\d+/, 'the simulator\'s listening line, by replica');
});

t.test('a screenshot of the populated dashboard', async (t) => {
  // Traffic across both versions (the rollout's 70/30) while the rates settle, so the table has figures.
  const chat = { model: 'dash', stream: true, max_tokens: 24, messages: [{ role: 'user', content: 'How do sluices work?' }] };
  const until = Date.now() + 5_000;
  while (Date.now() < until) {
    await Promise.all([aliasVersions('dash', 10), pool(4, 4, () => gwRequest(`${gw!.url}/v1/chat/completions`, { body: chat, timeoutMs: 10_000 }))]);
  }
  await page.waitForFunction(() => Number(document.querySelector('tr[data-deployment="dash-2"] [data-metric="tokens"]')?.textContent) > 0);
  await page.getByLabel('version', { exact: true }).fill('3');
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-dashboard-')), 'dashboard.png');
  await page.screenshot({ path: file, fullPage: true });
  t.comment(`screenshot: ${file}`);
  t.pass('written');
});

t.test('abort the rollout from the page: the traffic goes back to the stable version', async (t) => {
  await page.getByRole('button', { name: 'abort rollout of dash' }).click();
  await page.waitForFunction(() => document.querySelector('.model[data-model="dash"] .rollout .state')?.textContent === 'aborted');
  t.pass('the rollout shows aborted');
  await page.waitForFunction(() => document.querySelectorAll('ol[aria-label="events of dash"] li[data-action-kind="rollback"]').length === 2);
  t.pass('and its rollback event');
  t.same(await aliasFollows('dash', '1'), { 1: 20 }, 'every request reaches version 1 again');
});

t.test('undeploy from the table', async (t) => {
  page.once('dialog', (d) => void d.accept());
  await page.getByRole('button', { name: 'undeploy dash-2' }).click();
  await page.locator(row('dash-2')).waitFor({ state: 'detached' });
  t.equal(await admin.deployment('dash-2'), null, 'gone from the admin API');
  t.equal(await page.getByRole('slider', { name: 'weight of dash-2' }).count(), 0, 'and from the model card');
  t.same(pageErrors, [], 'the page threw nothing');
});

t.test('the live feed ends cleanly when the gateway stops', async (t) => {
  await browser!.close();
  browser = undefined;
  const res = await fetch(`${gw!.adminUrl}/v1/events/stream`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(WAIT_MS) });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body!.getReader();
  const first = await reader.read();
  t.match(new TextDecoder().decode(first.value), /^retry: \d+/, 'the stream starts');
  const stopped = gw!.stop();
  let ended: 'done' | string = '';
  try {
    for (;;) {
      const { done } = await reader.read();
      if (done) {
        ended = 'done';
        break;
      }
    }
  } catch (err) {
    ended = String(err);
  }
  t.equal(ended, 'done', 'the stream ends as a complete response, not cut');
  t.equal(await stopped, 0, 'the gateway stopped cleanly');
  await assertNoServersLeft(t, pids.pids, RANGE);
});
