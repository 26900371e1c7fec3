// A hibernation whose state writes fail (a full disk; here a directory where hibernated.json
// and replicas.json are) still stops the servers and frees their ports, and leaves the
// deployment able to wake: a wake (or the next request) starts it once the disk is mended.
// It stayed asleep for good, wake answering 200 and starting nothing.

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, waitState } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

// Replica ports 19900-19903 belong to this file.
const RANGE = { from: 19900, to: 19903 };

t.test('a hibernation that cannot be recorded still lets the deployment wake', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  const gw = await startGateway({ ports: RANGE, state_dir: stateDir, deployments: [{ model: 'demo', version: '1', runtime: 'sim' }] });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  const blocked = ['hibernated.json', 'replicas.json'].map((name) => join(stateDir, name));
  for (const path of blocked) {
    rmSync(path, { force: true });
    mkdirSync(path);
  }
  const slept = await admin.post('/v1/deployments/demo-1/hibernate?grace_ms=0', {});
  t.equal(slept.status, 200, slept.text);
  const view = await waitState(admin, 'demo-1', 'hibernated');
  t.same(view.replicas, [], 'its servers stopped');
  t.ok(gw.lines.some((l) => l.includes('could not record the hibernation')), 'the failed write is logged');

  for (const path of blocked) rmSync(path, { recursive: true, force: true });
  const woken = await admin.post('/v1/deployments/demo-1/wake', {});
  t.equal(woken.status, 200, woken.text);
  await waitState(admin, 'demo-1', 'ready', 20_000);
  const r = await httpRequest(`${gw.url}/demo-1/api/tags`, { timeoutMs: 10_000 });
  t.equal(r.status, 200, 'and serves again');
});
