// An upgrade that starts the new sluice beside the old one (other ports, the same state_dir):
// a sluice older than the state_dir lock writes no gateway.pid, so the lock cannot tell that
// it runs. Its model servers, children of a live gateway, are then no leftovers of a killed
// run: the new start is refused, naming the running gateway, and its servers go on. Servers
// a killed gateway left (children of init by then) are still adopted.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { deployments, serveUntilExit, startGateway, stateDirConfigFile, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 27145-27148 belong to this file (gateways on ephemeral ports).
const FIRST = { from: 27145, to: 27146 };
const SECOND = { from: 27147, to: 27148 };
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-older-owner-')), 'state');
const DEPLOYMENTS = [{ model: 'm', version: '1', runtime: 'sim' }];
let first: Gateway | undefined;
let second: Gateway | undefined;

t.teardown(async () => {
  await first?.stop();
  await second?.stop();
  await reapServers([], FIRST);
  await reapServers([], SECOND);
});

t.test('a gateway on the state_dir of a running one that took no lock is refused, and leaves it alone', async (t) => {
  first = await startGateway({ state_dir: stateDir, ports: FIRST, deployments: DEPLOYMENTS });
  const before = (await deployments(first))[0]!.replicas[0]!;
  // As a sluice older than the lock runs: no gateway.pid.
  rmSync(join(stateDir, 'gateway.pid'));

  const refused = await serveUntilExit(stateDirConfigFile(stateDir, SECOND, DEPLOYMENTS));
  t.equal(refused.code, 1, 'the second start fails');
  const said = refused.proc.lines.join('\n');
  t.match(said, `state_dir ${stateDir} is in use by another gateway (pid ${first.child.pid}`, 'naming the directory and the running gateway');
  t.notMatch(said, /adopt|stopping a server/i, "it touched none of the first one's servers");

  const after = (await deployments(first))[0]!.replicas[0]!;
  t.equal(after.state, 'ready');
  t.equal(after.pid, before.pid, "the first gateway's model server still runs, not restarted");
});

t.test("the servers of a killed gateway are still adopted", async (t) => {
  const pid = (await deployments(first!))[0]!.replicas[0]!.pid;
  await first!.stop('SIGKILL');
  first = undefined;
  second = await startGateway({ state_dir: stateDir, ports: FIRST, deployments: DEPLOYMENTS });
  t.match(second.lines.join('\n'), /adopted a running server/, 'adopted');
  t.equal((await deployments(second))[0]!.replicas[0]!.pid, pid, 'the same server');
  t.equal(await second.stop(), 0, 'exits 0');
  second = undefined;
});
