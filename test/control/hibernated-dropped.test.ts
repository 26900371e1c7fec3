// A deployment dropped from the desired state while the gateway was down (removed from the
// config file between two runs) leaves nothing of itself in the state directory: a
// deployment made later under the same id is a new one. It used to come up `hibernated`
// (with the old one's hibernated_since, counted in its hibernated hours and savings) even
// when deployed through the API with ?wait=true, and to list the old server's output as
// its logs; and every such deployment's log files stayed in the state directory for good.

import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, waitState } from '../helpers/control.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 29300-29309 belong to this file.
const RANGE = { from: 29300, to: 29309 };
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-hibernated-dropped-')), 'state');
let gw: Gateway | undefined;

const config = (deployments: unknown[]): Record<string, unknown> => ({ ports: RANGE, state_dir: stateDir, deployments });
const keep = { model: 'keep', version: '1', runtime: 'sim' };
const nap = { model: 'nap', version: '1', runtime: 'sim' };
const gone = { model: 'gone_too', version: '1', runtime: 'sim' };

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('a hibernated deployment removed from the config file leaves no record: deployed anew, it starts awake', async (t) => {
  gw = await startGateway(config([keep, nap, gone]));
  let admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments/nap-1/hibernate')).status, 200);
  await waitState(admin, 'nap-1', 'hibernated', 10_000);
  t.ok(readdirSync(join(stateDir, 'logs')).some((n) => n.startsWith('nap-1_')), 'its log files stay while it sleeps');
  await gw.stop();

  // The next run's config file no longer has it.
  gw = await startGateway(config([keep]));
  admin = adminClient(gw.adminUrl);
  t.equal(await admin.deployment('nap-1'), null);
  const records = JSON.parse(readFileSync(join(stateDir, 'hibernated.json'), 'utf8')) as Record<string, string>;
  t.notOk('nap-1' in records, 'its hibernation record is dropped');
  const files = readdirSync(join(stateDir, 'logs'));
  t.notOk(files.some((n) => n.startsWith('nap-1_')), 'and its servers\' log files');
  t.notOk(files.some((n) => n.startsWith('gone_too-1_')), 'as those of one that ran until the stop');
  t.ok(files.includes('keep-1_0.out'), 'those of the deployments still desired stay');

  // Made again, through the API, with another spec: a new deployment.
  const made = await admin.post('/v1/deployments?wait=true', { model: 'nap', version: '1', runtime: 'sim', args: ['--tokens', '2'] });
  t.equal(made.status, 201, made.text);
  t.equal(made.body.state, 'ready', 'it is started, not asleep since the old one\'s hibernation');
  t.equal(made.body.hibernated_since, null);
  const costs = await admin.get('/v1/costs');
  const cost = (costs.body.deployments as Array<{ id: string; hibernated_hours: number }>).find((c) => c.id === 'nap-1');
  t.equal(cost?.hibernated_hours, 0, 'no hibernated hours from before it existed');
  // Its own server's output is read within 200 ms.
  const lines = await eventually(async () => {
    const l = (await admin.get('/v1/deployments/nap-1/logs?tail=50')).body.lines as Array<{ at: number }>;
    return l.length > 0 ? l : undefined;
  }, 5_000, 'the new server\'s output');
  const since = Date.parse(made.body.created_at as string);
  t.notOk(lines.some((l) => l.at < since), `no line of the old server: ${JSON.stringify(lines)}`);
});
