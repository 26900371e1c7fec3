// A model name may have a `:` (Ollama's style); a file name of it once had `_` instead, so
// `a:b-1` and `a_b-1` wrote one pair of log files and shared one TMPDIR: each one's logs
// showed the other's output, and an undeploy of one removed the other's files and TMPDIR
// while it ran. Each deployment now has its own.
// Ports 26286-26289 belong to this file (model servers).

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers, waitFor } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const RANGE = { from: 26286, to: 26289 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('a:b-1 and a_b-1 keep their own log files and TMPDIR', async (t) => {
  const stateDir = join(t.testdir(), 'state');
  const logs = join(stateDir, 'logs');
  gw = await startGateway({ ports: RANGE, state_dir: stateDir }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const sim = ['--ttft-ms', '0', '--token-ms', '0'];
  const colon = await admin.post('/v1/deployments?wait=true', { model: 'a:b', version: '1', runtime: 'sim', args: sim });
  t.equal(colon.status, 201, 'a:b-1 deployed');
  const underscore = await admin.post('/v1/deployments?wait=true', { model: 'a_b', version: '1', runtime: 'sim', args: sim });
  t.equal(underscore.status, 201, 'a_b-1 deployed');
  t.equal(readdirSync(logs).length, 4, `two files each: ${readdirSync(logs).join(' ')}`);
  t.equal(readdirSync(join(stateDir, 'tmp')).length, 2, 'a TMPDIR each');

  const portOf = async (id: string): Promise<number> => (await admin.deployment(id))!.replicas[0]!.port;
  const [colonPort, underscorePort] = [await portOf('a:b-1'), await portOf('a_b-1')];
  const listening = async (id: string): Promise<string> =>
    ((await admin.get(`/v1/deployments/${id}/logs?tail=100`)).body as { lines: Array<{ line: string }> }).lines.map((l) => l.line).join('\n');
  // The simulator says its port once it listens: each deployment's logs show its own only.
  await waitFor(async () => (await listening('a_b-1')).includes(`"port":${underscorePort}`), 5_000, 'a_b-1 logs its port');
  t.notOk((await listening('a_b-1')).includes(`"port":${colonPort}`), 'a_b-1\'s logs do not show a:b-1\'s server');
  t.notOk((await listening('a:b-1')).includes(`"port":${underscorePort}`), 'nor the other way');

  t.equal((await admin.del('/v1/deployments/a:b-1?grace_ms=0')).status, 200, 'a:b-1 undeployed');
  const left = readdirSync(logs).sort();
  t.same(left, ['a_b-1_0.err', 'a_b-1_0.out'], 'undeployed, a:b-1 takes its own files only');
  t.ok(existsSync(join(stateDir, 'tmp', 'a_b-1_0')), 'and leaves a_b-1\'s TMPDIR');
  t.equal((await fetch(`${gw.url}/a_b-1/api/tags`)).status, 200, 'a_b-1 still serves');
});
