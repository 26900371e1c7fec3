import { readFileSync } from 'node:fs';
import t from 'tap';
import { killGroup, PortAllocator, ReplicaProcess } from '../../src/ports/index.js';
import { membersOf, recordStates, serverArgv, waitFor, writeScripts } from './fixtures/servers.js';

// Ports 18160-18169 belong to this file.
const ports = new PortAllocator({ from: 18160, to: 18169 });
const scripts = writeScripts(t.testdir());

const timing = { readinessIntervalMs: 50, probeTimeoutMs: 200, startTimeoutMs: 5000 } as const;

t.test('a server that ignores SIGTERM is SIGKILLed after the grace period', async (t) => {
  const port = await ports.acquire();
  t.teardown(() => ports.release(port));
  const r = new ReplicaProcess({ id: 'stubborn', argv: serverArgv(scripts, port, 'ignore-term'), port, readinessPath: '/ping', stopGraceMs: 600, ...timing });
  t.teardown(() => r.stop());
  const seen = recordStates(r);
  await r.start();
  const pgid = r.pgid as number;
  const started = Date.now();
  await r.stop();
  const took = Date.now() - started;
  t.ok(took >= 600, `waited the grace period (${took} ms)`);
  t.ok(took < 3000, 'then killed it at once');
  t.same(membersOf(pgid), []);
  t.match(seen.at(-1), { state: 'stopped', info: { forced: true } });
  t.ok(r.logs().some((l) => /ignoring SIGTERM/.test(l.line)), 'SIGTERM was delivered first');
});

t.test('grandchildren are stopped with the group, even ones that ignore SIGTERM', async (t) => {
  const port = await ports.acquire();
  t.teardown(() => ports.release(port));
  // The leader (node, after exec) dies on SIGTERM; one sleep ignores it and outlives the
  // leader, so stop() must keep watching the group, not the leader.
  const argv = ['bash', '-c', 'sleep 1000 & (trap "" TERM; exec sleep 1000) & exec "$0" "$@"', ...serverArgv(scripts, port, 'ok')];
  const r = new ReplicaProcess({ id: 'forker', argv, port, readinessPath: '/ping', stopGraceMs: 500, ...timing });
  t.teardown(() => r.stop());
  const seen = recordStates(r);
  await r.start();
  const pgid = r.pgid as number;
  t.ok(membersOf(pgid).length >= 3, 'leader and two grandchildren share the group');
  await r.stop();
  t.same(membersOf(pgid), [], 'no process of the group remains');
  t.match(seen.at(-1), { state: 'stopped', info: { forced: true } });
});

t.test('killGroup stops a leftover group and refuses the gateway own group', async (t) => {
  const port = await ports.acquire();
  t.teardown(() => ports.release(port));
  const r = new ReplicaProcess({ id: 'leftover', argv: ['bash', '-c', 'sleep 1000 & exec "$0" "$@"', ...serverArgv(scripts, port, 'ok')], port, readinessPath: '/ping', ...timing });
  t.teardown(() => r.stop());
  await r.start();
  const pgid = r.pgid as number;
  t.same(await killGroup(pgid, 1000), { forced: false });
  t.same(membersOf(pgid), []);
  await waitFor(() => r.state === 'restarting' || r.state === 'ready', 5000, 'the supervisor to notice the crash');
  await r.stop();
  t.same(await killGroup(pgid), { forced: false }, 'a group already gone is fine');
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const ownPgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  await t.rejects(killGroup(ownPgid), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'pgid' } });
  await t.rejects(killGroup(1), { code: 'SLUICE_ERR_INVALID_FIELD' });
});
