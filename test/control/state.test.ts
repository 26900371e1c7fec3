// Desired state: deployments made through the admin API are written atomically to
// <state_dir>/desired.json, or to Redis when SLUICE_REDIS_URL (or redis.url) is set, and
// come back on restart. Corrupt or unreadable state stops the start-up with a clear
// error naming the file, and a non-zero exit.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { freePort } from '../fixtures/free-port.js';
import { serveUntilExit, startGateway, type Gateway, type Proc } from '../helpers/procs.js';
import {
  adminClient, assertNoServersLeft, gwRequest, PidLog, reapServers, redisCommand, serversInRange, startRedis, waitState,
  type RedisServer,
} from '../helpers/control.js';

t.setTimeout(120_000);

// Replica ports 18570-18594 belong to this file: file store 18570-18579, Redis gateways
// A 18580-18584, B 18585-18589, C 18590-18594.
const RANGE = { from: 18570, to: 18594 };
const dir = t.testdir();
const pids = new PidLog();
const gateways: Gateway[] = [];
let redis: RedisServer | undefined;

t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await redis?.stop();
  await reapServers(pids.pids, RANGE);
});

async function gateway(config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<Gateway> {
  const g = await startGateway(config, env, false);
  gateways.push(g);
  return g;
}

async function stop(g: Gateway): Promise<number | null> {
  const code = await g.stop();
  gateways.splice(gateways.indexOf(g), 1);
  return code;
}

const sim = (model: string): Record<string, unknown> => ({ model, version: '1', runtime: 'sim' });

t.test('the desired state file is written atomically and follows deploy/undeploy', async (t) => {
  const stateDir = join(dir, 'file-state');
  const g = await gateway({ ports: { from: 18570, to: 18579 }, state_dir: stateDir });
  const admin = adminClient(g.adminUrl);
  const file = join(stateDir, 'desired.json');
  const ids = (): string[] => (JSON.parse(readFileSync(file, 'utf8')).deployments as Array<{ spec: { model: string; version: string } }>).map((d) => `${d.spec.model}-${d.spec.version}`).sort();

  // Five deploys at once: each save must land whole, the last one with all five.
  const replies = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((m) => admin.post('/v1/deployments', { ...sim(m), args: ['--ttft-ms', '1'], upstream: { connect_timeout_ms: 1234 } })));
  pids.note(replies.map((r) => r.body));
  t.same(replies.map((r) => r.status), [201, 201, 201, 201, 201]);
  t.same(ids(), ['a-1', 'b-1', 'c-1', 'd-1', 'e-1'], 'every deployment is in the file');
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  t.equal(doc.format, 1);
  t.match(doc.deployments[0].spec, { runtime: 'sim', args: ['--ttft-ms', '1'], upstream: { connect_timeout_ms: 1234 } }, 'the whole spec is kept');
  t.same(readdirSync(stateDir).filter((f) => f.includes('.tmp')), [], 'no temp file left behind');

  for (const m of ['a', 'b', 'c', 'd', 'e']) await waitState(admin, `${m}-1`, 'ready');
  t.equal((await admin.del('/v1/deployments/b-1?grace_ms=0')).status, 200);
  t.same(ids(), ['a-1', 'c-1', 'd-1', 'e-1'], 'undeploy removes it from the file');

  t.equal(await stop(g), 0);
  t.same(ids(), ['a-1', 'c-1', 'd-1', 'e-1'], 'a clean stop keeps the desired state');
  const g2 = await gateway({ ports: { from: 18570, to: 18579 }, state_dir: stateDir });
  const admin2 = adminClient(g2.adminUrl);
  for (const id of ['a-1', 'c-1', 'd-1', 'e-1']) {
    const v = await waitState(admin2, id, 'ready');
    pids.note(v);
    t.equal(v.source, 'api');
  }
  t.same((await admin2.list()).map((d) => d.id).sort(), ['a-1', 'c-1', 'd-1', 'e-1'], 'exactly these came back');
  t.equal((await admin2.get('/v1/deployments/a-1')).body.replicas[0].state, 'ready');
  t.equal((await gwRequest(`${g2.url}/a-1/_sim/stats`)).status, 200, 'and serve');
  t.equal(await stop(g2), 0);
});

/** Runs `sluice serve` against `stateDir` and waits for it to exit. */
async function serveState(stateDir: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; proc: Proc; ms: number }> {
  const cfg = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(cfg, JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, workers: 1, state_dir: stateDir, ports: { from: 18570, to: 18579 },
  }));
  return serveUntilExit(cfg, env);
}

t.test('corrupt or unreadable state stops the start-up, naming the file', async (t) => {
  const cases: Array<[string, (stateDir: string) => string, RegExp]> = [
    ['desired.json is not JSON', (d) => {
      writeFileSync(join(d, 'desired.json'), '{"format": 1, "deployments": [');
      return join(d, 'desired.json');
    }, /not valid JSON/],
    ['desired.json is some other document', (d) => {
      writeFileSync(join(d, 'desired.json'), '{"hello": "world"}');
      return join(d, 'desired.json');
    }, /not a sluice state document/],
    ['desired.json holds an invalid deployment', (d) => {
      writeFileSync(join(d, 'desired.json'), JSON.stringify({ format: 1, deployments: [{ spec: { model: 'ok', version: '1-2' }, created_at: 'x' }] }));
      return join(d, 'desired.json');
    }, /version/],
    ['desired.json is a directory', (d) => {
      mkdirSync(join(d, 'desired.json'));
      return join(d, 'desired.json');
    }, /./],
    ['replicas.json is not JSON', (d) => {
      writeFileSync(join(d, 'replicas.json'), '[{"replica": ');
      return join(d, 'replicas.json');
    }, /not valid JSON/],
  ];
  let n = 0;
  for (const [what, corrupt, reason] of cases) {
    const stateDir = join(dir, `corrupt-${n++}`);
    mkdirSync(stateDir, { recursive: true });
    const file = corrupt(stateDir);
    const { code, proc, ms } = await serveState(stateDir);
    const out = proc.lines.join('\n');
    t.not(code, 0, `${what}: non-zero exit (${code}) after ${Math.round(ms)} ms`);
    t.not(code, -999, `${what}: exits by itself`);
    t.ok(proc.stderr.some((l) => l.includes(file)), `${what}: stderr names ${file}`, { stderr: proc.stderr.slice(-5) });
    t.match(out, reason, `${what}: says what is wrong`);
    t.notOk(out.includes('sluice is listening'), `${what}: never serves`);
  }
  t.same(serversInRange(18570, 18579), [], 'no model server was started');
});

t.test('desired state in Redis is shared by gateways with different state dirs', async (t) => {
  redis = await startRedis();
  const a = await gateway({ ports: { from: 18580, to: 18584 }, state_dir: join(dir, 'redis-a') }, { SLUICE_REDIS_URL: redis.url });
  const b0 = await gateway({ ports: { from: 18585, to: 18589 }, state_dir: join(dir, 'redis-b') }, { SLUICE_REDIS_URL: redis.url });
  const adminA = adminClient(a.adminUrl);
  const adminB0 = adminClient(b0.adminUrl);
  t.ok(a.lines.some((l) => l.includes('"state":"redis"')), 'gateway A uses the Redis store');

  const r = await adminA.post('/v1/deployments?wait=true', { ...sim('shared'), args: ['--ttft-ms', '2'] });
  pids.note(r.body);
  t.equal(r.status, 201);
  t.notOk(existsSync(join(dir, 'redis-a', 'desired.json')), 'no desired.json when Redis holds the state');
  const stored = (await redisCommand(redis.port, 'HGETALL', 'sluice:deployments')) as string[];
  t.same(stored.filter((_, i) => i % 2 === 0), ['shared-1'], 'one entry in Redis');
  t.match(JSON.parse(stored[1]!), { spec: { model: 'shared', version: '1', args: ['--ttft-ms', '2'] } }, 'holding the whole spec');

  // A second instance that was already running deploys something else: the shared
  // state must now hold both, not just what that instance knew about.
  const other = await adminB0.post('/v1/deployments?wait=true', sim('other'));
  pids.note(other.body);
  t.equal(other.status, 201);

  // A new instance, its own state dir, the same Redis (through redis.url this time).
  const c = await gateway({ ports: { from: 18590, to: 18594 }, state_dir: join(dir, 'redis-c'), redis: { url: redis.url } });
  const adminC = adminClient(c.adminUrl);
  const shared = await waitState(adminC, 'shared-1', 'ready');
  pids.note(shared);
  t.equal(shared.source, 'api');
  t.ok(shared.replicas[0]!.port >= 18590 && shared.replicas[0]!.port <= 18594, 'running on the new gateway\'s own replica port');
  t.not(shared.replicas[0]!.pid, r.body.replicas[0].pid, 'its own server');
  t.equal((await gwRequest(`${c.url}/shared-1/_sim/stats`)).status, 200, 'and serving');
  const otherC = await adminC.deployment('other-1');
  pids.note(otherC);
  t.not(otherC, null, 'the deployment made through the second gateway is there too');

  await waitState(adminC, 'other-1', 'ready');
  // Gateway A was running when B0 deployed: it follows the shared state on its own.
  pids.note(await waitState(adminA, 'other-1', 'ready'));
  t.pass('a running instance picks up a deployment made through another one');
  t.equal((await adminC.del('/v1/deployments/other-1?grace_ms=0')).status, 200);
  const left = (await redisCommand(redis.port, 'HKEYS', 'sluice:deployments')) as string[];
  t.same(left, ['shared-1'], 'undeploy removes only that deployment from Redis');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && (await adminA.deployment('other-1')) !== null) await new Promise((r) => setTimeout(r, 100));
  t.equal(await adminA.deployment('other-1'), null, 'and the other instances undeploy it too');
  t.not(await adminA.deployment('shared-1'), null, 'leaving the rest in place');

  for (const g of [a, b0, c]) t.equal(await stop(g), 0);
});

t.test('an unreachable Redis stops the start-up with a clear error and no secret', async (t) => {
  const port = await freePort();
  const { code, proc } = await serveState(join(dir, 'redis-down'), { SLUICE_REDIS_URL: `redis://:hunter2-secret@127.0.0.1:${port}` });
  t.not(code, 0, `non-zero exit (${code})`);
  t.not(code, -999, 'exits by itself');
  const err = proc.stderr.join('\n');
  t.match(err, new RegExp(`redis://127\\.0\\.0\\.1:${port}`), 'names the Redis server');
  t.notOk(proc.lines.join('\n').includes('hunter2-secret'), 'never prints the password');
});

t.test('stopping the gateways stops every model server they started', async (t) => {
  await Promise.all(gateways.map((g) => g.stop()));
  gateways.length = 0;
  await assertNoServersLeft(t, pids.pids, RANGE);
});
