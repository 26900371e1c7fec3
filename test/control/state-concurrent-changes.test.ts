// Admin changes that arrive together on the file store are all applied and all stored: an
// undeploy reads the desired state back (to drop the weights of undeployed versions), and
// that read must neither take another change's half-written temp file for a crash's
// leftover (its rename failed: 500 "desired.json: cannot write it (ENOENT)") nor put back
// in memory what the file held before a write that ended meanwhile.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient } from '../helpers/control.js';

t.setTimeout(120_000);

// Ports 25510-25512 belong to this file: 25510-25511 the (unused) replica range, 25512 the
// remote deployments' URL, where nothing listens (their health checks are off).
const RANGE = { from: 25510, to: 25511 };
const REMOTE = 'http://127.0.0.1:25512';
const stateDir = join(t.testdir(), 'state');
const gateways: Gateway[] = [];

t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
});

async function gateway(): Promise<ReturnType<typeof adminClient>> {
  const g = await startGateway({ ports: RANGE, state_dir: stateDir }, {}, false);
  gateways.push(g);
  return adminClient(g.adminUrl);
}

const spec = (model: string): Record<string, unknown> => ({ model, version: '1', runtime: 'remote', urls: [REMOTE], health_check: { enabled: false } });

t.test('parallel deploys and undeploys all succeed, and a restart finds exactly what was left', async (t) => {
  const admin = await gateway();
  const first = Array.from({ length: 30 }, (_, i) => `old${i}`);
  const second = Array.from({ length: 30 }, (_, i) => `new${i}`);

  const deployed = await Promise.all(first.map((m) => admin.post('/v1/deployments', spec(m))));
  t.same(deployed.filter((r) => r.status !== 201).map((r) => r.text), [], 'every deploy: 201');

  const mixed = await Promise.all([
    ...first.map((m) => admin.del(`/v1/deployments/${m}-1?grace_ms=0`)),
    ...second.map((m) => admin.post('/v1/deployments', spec(m))),
  ]);
  t.same(mixed.filter((r) => r.status !== 200 && r.status !== 201).map((r) => `${r.status} ${r.text}`), [], 'every undeploy 200 and deploy 201, side by side');
  const live = (await admin.list()).map((d) => d.id).sort();
  t.same(live, second.map((m) => `${m}-1`).sort(), 'the second set is deployed, the first gone');
  t.same(readdirSync(stateDir).filter((f) => f.endsWith('.tmp')), [], 'no temp file is left behind');

  await gateways.pop()!.stop();
  const again = await gateway();
  t.same((await again.list()).map((d) => d.id).sort(), live, 'a restart restores exactly those');
});
