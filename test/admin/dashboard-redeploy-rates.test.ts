// The dashboard's rates (/ui, in real Chromium) for a deployment that is new, or that was
// undeployed and deployed again under the same id, under steady traffic. Its counts start
// from zero then (README: "one deployed again under the same id starts from zero"), and the
// page diffed them with the old deployment's counts of 10 s before: requests/s around -5 for
// the whole window, errors '-'. A deployment new while the page was open showed '-' until the
// window's oldest snapshot held it (10 s). Rates come from the snapshots where its counts run on.

import t from 'tap';
import { dashboardFixture } from '../helpers/chromium.js';
import { gwRequest, sleep } from '../helpers/control.js';

t.setTimeout(120_000);

// Replica ports 29470-29479 belong to this file.
const RANGE = { from: 29470, to: 29479 };
const WAIT_MS = 30_000;
const SPEC = { model: 'rd', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'] };

const ui = dashboardFixture(t, { ports: RANGE, workers: 2, log: { level: 'info', access: false } }, { range: RANGE, waitMs: WAIT_MS });

/** The deployment row's metric cells, by name. */
async function cells(id: string): Promise<Record<string, string>> {
  return ui.page.$$eval(`tr[data-deployment="${id}"] [data-metric]`, (tds) => Object.fromEntries(tds.map((td) => [td.getAttribute('data-metric')!, td.textContent ?? ''])));
}

/** Samples the row every 500 ms for `ms`. */
async function samples(id: string, ms: number): Promise<Array<Record<string, string>>> {
  const out: Array<Record<string, string>> = [];
  for (const end = Date.now() + ms; Date.now() < end;) {
    out.push(await cells(id));
    await sleep(500);
  }
  return out;
}

t.test('rates of a new deployment, and of one deployed again under the same id, under steady traffic', async (t) => {
  await ui.page.goto(`${ui.gw.adminUrl}/ui`);
  await ui.page.waitForSelector('#status.live');
  // Some seconds of snapshots without it, as when the page was opened before the deploy.
  await sleep(3_000);
  t.equal((await ui.admin.post('/v1/deployments?wait=true', SPEC)).status, 201, 'rd-1 deployed');

  let sending = true;
  const traffic = (async () => {
    while (sending) {
      await gwRequest(`${ui.gw.url}/rd-1/api/tags`, { timeoutMs: 5_000 }).catch(() => undefined);
      await sleep(40);
    }
  })();
  t.teardown(() => {
    sending = false;
  });

  const fresh = await samples('rd-1', 5_000);
  t.ok(fresh.slice(4).every((c) => Number(c['rps']) > 5), `a new deployment has its rate within 2 s: ${fresh.map((c) => c['rps']).join(' ')}`);
  // The window (10 s) fills with the first deployment's counts.
  await sleep(7_000);
  t.ok(Number((await cells('rd-1'))['rps']) > 5, 'the steady rate');

  t.equal((await ui.admin.del('/v1/deployments/rd-1?grace_ms=0')).status, 200, 'rd-1 undeployed');
  t.equal((await ui.admin.post('/v1/deployments?wait=true', SPEC)).status, 201, 'and deployed again');
  const after = await samples('rd-1', 10_000);
  sending = false;
  await traffic;
  const shown = after.map((c) => `${c['rps']}/${c['errors']}/${c['tokens']}`).join(' ');
  t.ok(after.every((c) => c['rps'] === '-' || Number(c['rps']) >= 0), `requests/s is never negative: ${shown}`);
  t.ok(after.every((c) => c['tokens'] === '-' || Number(c['tokens']) >= 0), 'nor tokens/s');
  t.ok(after.slice(5).every((c) => Number(c['rps']) > 5 && c['errors'] === '0.0%'), `the new deployment's rate and error rate within 3 s: ${shown}`);
  t.same(ui.pageErrors, [], 'no error in the page');
});
