// A model server's TMPDIR (state_dir/tmp/<replica>) goes with its server: `mlflow models
// serve` copies its model there on every start. A server left by a killed gateway and
// stopped by the next start, its deployment no longer desired (dropped from the config
// file meanwhile), kept its TMPDIR for good.

import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 29330-29339 belong to this file.
const RANGE = { from: 29330, to: 29339 };
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-leftover-tmpdir-')), 'state');
const config = (deployments: unknown[]): Record<string, unknown> => ({ ports: RANGE, state_dir: stateDir, deployments });
const keep = { model: 'keep', version: '1', runtime: 'sim' };
const gone = { model: 'gone', version: '1', runtime: 'sim', replicas: 2 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('the temp dirs of servers a killed run left, stopped as no deployment claims them, are removed', async (t) => {
  gw = await startGateway(config([keep, gone]));
  const tmp = join(stateDir, 'tmp');
  // What a model copied there looks like.
  writeFileSync(join(tmp, 'gone-1_0', 'model.bin'), 'weights');
  t.same(readdirSync(tmp).sort(), ['gone-1_0', 'gone-1_1', 'keep-1_0']);
  await gw.stop('SIGKILL');

  gw = await startGateway(config([keep]));
  t.equal(await adminClient(gw.adminUrl).deployment('gone-1'), null);
  t.notOk(existsSync(join(tmp, 'gone-1_0')), 'the leftover servers\' temp dirs are gone');
  t.notOk(existsSync(join(tmp, 'gone-1_1')));
  t.ok(existsSync(join(tmp, 'keep-1_0')), 'the adopted server keeps its own');
});
