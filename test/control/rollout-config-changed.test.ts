// A rollout in progress when the gateway stopped, whose model's `traffic` the config file then
// changed: at the next start the config wins (README), and the rollout ends as any change by
// someone else ends it: `aborted`, with its end time, counted in sluice_rollouts_total. (It
// vanished: `rollout: null`, no end, no count.)

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers } from '../helpers/control.js';
import { metricsText, sample, startGateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 23940-23949 belong to this file.
const RANGE = { from: 23940, to: 23949 };
const DEPLOYMENTS = [
  { model: 'rc', version: '1', runtime: 'sim' },
  { model: 'rc', version: '2', runtime: 'sim' },
];

interface View { weights: Record<string, number> | null; rollout: { status: string; finished_at: string | null } | null }

t.test('a rollout whose traffic the config changed while the gateway was stopped ends aborted', async (t) => {
  const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-rollout-config-')), 'state');
  t.teardown(() => reapServers([], RANGE));
  const first = await startGateway({ ports: RANGE, state_dir: stateDir, deployments: DEPLOYMENTS, traffic: { rc: { '1': 100 } } });
  try {
    const started = await adminClient(first.adminUrl).request('PUT', '/v1/models/rc/rollout', { canary: '2', steps: [10, 50, 100], interval_s: 3600 });
    t.ok(started.status < 300, JSON.stringify(started.body));
    t.equal(((await adminClient(first.adminUrl).get('/v1/models/rc')).body as View).rollout?.status, 'progressing');
  } finally {
    await first.stop();
  }

  const second = await startGateway({ ports: RANGE, state_dir: stateDir, deployments: DEPLOYMENTS, traffic: { rc: { '1': 50, '2': 50 } } });
  t.teardown(() => second.stop());
  const view = (await adminClient(second.adminUrl).get('/v1/models/rc')).body as View;
  t.same(view.weights, { 1: 50, 2: 50 }, 'the config wins');
  t.equal(view.rollout?.status, 'aborted', 'the rollout ended, and says so');
  t.ok(view.rollout?.finished_at, 'with its end time');
  t.equal(sample(await metricsText(second), 'sluice_rollouts_total', { model: 'rc', result: 'aborted' }), 1, 'counted');
});
