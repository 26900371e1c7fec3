// POST /v1/deployments/{id}/wake starts a failed deployment anew: once the cause of its
// failure is mended (here, a file that made its server exit at once is gone), the admin
// retries it without an undeploy, which would lose its traffic weights and history. It
// answered 200 and did nothing.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, waitState } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 19320-19324 belong to this file.
const RANGE = { from: 19320, to: 19324 };
const broken = join(mkdtempSync(join(tmpdir(), 'sluice-wake-failed-')), 'broken');
// Exits at once while `broken` exists; otherwise answers every request with "mended".
const SERVER = `if (require('fs').existsSync(${JSON.stringify(broken)})) process.exit(1);
require('http').createServer((q, s) => s.end('mended')).listen(Number(process.argv[1]), '127.0.0.1');`;
let gw: Gateway;

t.before(async () => {
  writeFileSync(broken, '');
  gw = await startGateway({
    ports: RANGE,
    deployments: [{ model: 'flaky', version: '1', runtime: 'command', command: [process.execPath, '-e', SERVER, '{port}'], readiness_path: '/' }],
  }, {}, false);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('a failed deployment is started again by wake, once what broke it is mended', async (t) => {
  const admin = adminClient(gw.adminUrl);
  await waitState(admin, 'flaky-1', 'failed');
  t.equal((await httpRequest(`${gw.url}/flaky-1/`)).status, 503, 'failed: nothing serves it');

  rmSync(broken);
  t.notOk(existsSync(broken));
  const woken = await admin.post('/v1/deployments/flaky-1/wake');
  t.equal(woken.status, 200, woken.text);
  await waitState(admin, 'flaky-1', 'ready');
  const r = await httpRequest(`${gw.url}/flaky-1/`);
  t.equal(r.status, 200);
  t.equal(r.body, 'mended', 'the new server answers');
  const events = (await admin.get('/v1/deployments/flaky-1/events')).body.events as Array<{ action: string }>;
  t.ok(events.some((e) => e.action === 'wake'), 'the restart is in its events');
});
