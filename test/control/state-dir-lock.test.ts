// One gateway per state_dir: a second `sluice serve` started from the same directory
// (another config, other ports) is refused, naming the directory and the holder, instead
// of adopting the first one's running model servers as leftovers and stopping them when it
// stops. The lock goes with a graceful stop, and one left by a killed gateway is taken over.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { deployments, serveUntilExit, startGateway, stateDirConfigFile, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 19336-19339 belong to this file.
const FIRST = { from: 19336, to: 19337 };
const SECOND = { from: 19338, to: 19339 };
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-lock-')), 'state');
const lockFile = join(stateDir, 'gateway.pid');
const DEPLOYMENTS = [{ model: 'm', version: '1', runtime: 'sim' }];
let first: Gateway | undefined;
let second: Gateway | undefined;

t.teardown(async () => {
  await first?.stop();
  await second?.stop();
  await reapServers([], FIRST);
  await reapServers([], SECOND);
});

t.test('a second gateway on the same state_dir is refused and leaves the first one alone', async (t) => {
  first = await startGateway({ state_dir: stateDir, ports: FIRST, deployments: DEPLOYMENTS });
  const before = (await deployments(first))[0]!.replicas[0]!;
  t.equal(readFileSync(lockFile, 'utf8').trim(), String(first.child.pid), 'the lock names the first gateway');

  const refused = await serveUntilExit(stateDirConfigFile(stateDir, SECOND, DEPLOYMENTS));
  t.equal(refused.code, 1, 'the second start fails');
  const said = refused.proc.lines.join('\n');
  t.match(said, `state_dir ${stateDir} is in use by another gateway (pid ${first.child.pid})`, 'naming the directory and the holder');
  t.notMatch(said, /adopt|leftover|previous/i, 'it touched none of the first one\'s servers');

  const after = (await deployments(first))[0]!.replicas[0]!;
  t.equal(after.state, 'ready');
  t.equal(after.pid, before.pid, "the first gateway's model server still runs, not restarted");
  t.equal(readFileSync(lockFile, 'utf8').trim(), String(first.child.pid), 'the lock is still the first one\'s');
});

t.test('a graceful stop gives the directory up; the next gateway takes it', async (t) => {
  await first!.stop();
  first = undefined;
  t.notOk(existsSync(lockFile), 'no lock left after the stop');
  second = await startGateway({ state_dir: stateDir, ports: SECOND, deployments: DEPLOYMENTS });
  t.equal(readFileSync(lockFile, 'utf8').trim(), String(second.child.pid));
  await second.stop();
  second = undefined;
});

t.test("a killed gateway's lock is taken over (its pid is gone, or is no gateway any more)", async (t) => {
  // The pid of a process that has exited.
  const gone = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => gone.once('exit', resolve));
  writeFileSync(lockFile, `${gone.pid}\n`);
  second = await startGateway({ state_dir: stateDir, ports: SECOND, deployments: DEPLOYMENTS });
  t.equal(readFileSync(lockFile, 'utf8').trim(), String(second.child.pid), 'a dead holder');
  await second.stop();
  second = undefined;

  // A live process that is not a gateway (the pid reused after a crash).
  writeFileSync(lockFile, `${process.pid}\n`);
  second = await startGateway({ state_dir: stateDir, ports: SECOND, deployments: DEPLOYMENTS });
  t.equal(readFileSync(lockFile, 'utf8').trim(), String(second.child.pid), 'a holder that is no sluice serve');
});
