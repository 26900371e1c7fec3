// The dashboard's log tail (/ui, in real Chromium) when the operator opens another
// deployment's tail while a poll of the first is still on its way (a slow admin API, a busy
// gateway): that poll's answer was written under the new header, the first deployment's
// lines shown as the second's until the next poll (2 s), and it went on polling when it
// found the same id (a close and reopen). An answer for a tail no longer shown is dropped.

import t from 'tap';
import { dashboardFixture } from '../helpers/chromium.js';
import { sleep } from '../helpers/control.js';

t.setTimeout(90_000);

// Replica ports 29540-29549 belong to this file.
const RANGE = { from: 29540, to: 29549 };
const WAIT_MS = 30_000;
/** How late the first deployment's log answers reach the page. */
const SLOW_MS = 1_200;

const ui = dashboardFixture(t, {
  ports: RANGE,
  log: { level: 'info', access: false },
  deployments: [{ model: 'lx', version: '1', runtime: 'sim' }, { model: 'ly', version: '1', runtime: 'sim' }],
}, { range: RANGE, waitMs: WAIT_MS });

t.test('a late answer for the tail shown before is not written under another', async (t) => {
  for (const id of ['lx-1', 'ly-1']) t.ok(((await ui.admin.get(`/v1/deployments/${id}/logs`)).body.lines as unknown[]).length > 0, `${id} has log lines`);
  await ui.page.route('**/v1/deployments/lx-1/logs*', async (route) => {
    await sleep(SLOW_MS);
    await route.continue();
  });
  await ui.page.goto(`${ui.gw.adminUrl}/ui`);
  await ui.page.getByRole('button', { name: 'logs of lx-1' }).click();
  await ui.page.getByRole('button', { name: 'logs of ly-1' }).click();
  await ui.page.waitForFunction(() => /ly-1\/0/.test(document.getElementById('logs')?.textContent ?? ''));
  // After lx-1's late answer, before ly-1's next poll (every 2 s).
  await sleep(SLOW_MS + 300);
  t.equal(await ui.page.locator('#logs-id').textContent(), 'ly-1', 'the tail of ly-1 is shown');
  const text = await ui.page.locator('#logs').textContent() ?? '';
  t.match(text, /ly-1\/0/, 'with its lines');
  t.notMatch(text, /lx-1\/0/, 'and none of lx-1\'s');

  // Closed and opened again while its poll is on its way: one polling loop (a poll every
  // 2 s + SLOW_MS: at most 3 in 8 s), not two (4 to 6).
  await ui.page.getByRole('button', { name: 'logs of lx-1' }).click();
  await ui.page.locator('#logs-close').click();
  await ui.page.getByRole('button', { name: 'logs of lx-1' }).click();
  await sleep(SLOW_MS + 200);
  let polls = 0;
  ui.page.on('request', (r) => {
    if (r.url().includes('/v1/deployments/lx-1/logs')) polls++;
  });
  await sleep(8_000);
  t.ok(polls <= 3, `one polling loop: ${polls} polls in 8 s`);
  t.same(ui.pageErrors, [], 'no error in the page');
});
