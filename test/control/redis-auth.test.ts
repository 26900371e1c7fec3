// A Redis that refuses the gateway's password (or its lack of one) is reported as such, at
// start-up and at run time, by the state store and by the data plane's rate limiter, never
// as "Connection is closed." (what a Redis that is down also gives), and without the password.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { adminClient, startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, serveUntilExit, startGateway, type Gateway, type Proc } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 19217-19219 belong to this file: Redis 19217, the gateway 19218 (admin 19219).
const REDIS_PORT = 19217;
const PASSWORD = 'first-secret-pw';
const dir = t.testdir();
let redis: RedisServer | undefined;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await redis?.stop();
});

const base = (redisUrl: string, stateDir: string): Record<string, unknown> => ({
  listen: { host: '127.0.0.1', port: 19218 },
  admin: { host: '127.0.0.1', port: 19219 },
  workers: 1,
  state_dir: join(dir, stateDir),
  ports: { from: 19217, to: 19217 },
  redis: { url: redisUrl },
});

/** Runs `sluice serve` until it exits by itself (or 20 s pass). */
async function serveConfig(config: Record<string, unknown>): Promise<{ code: number | null; proc: Proc }> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(config));
  return serveUntilExit(file);
}

t.before(async () => {
  redis = await startRedis(REDIS_PORT, { password: PASSWORD });
});

t.test('start-up: a wrong or missing password is named, and differs from Redis being down', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['a wrong password', 'redis://:wrong-secret-pw@127.0.0.1:19217', /cannot read state \(authentication failed: WRONGPASS/],
    ['no password', 'redis://127.0.0.1:19217', /cannot read state \(authentication failed: NOAUTH/],
    ['nothing listening', 'redis://:wrong-secret-pw@127.0.0.1:19218', /cannot read state \(no connection: connect ECONNREFUSED 127\.0\.0\.1:19218\)/],
  ];
  for (const [what, url, reason] of cases) {
    const { code, proc } = await serveConfig(base(url, `start-${what.replace(/ /g, '-')}`));
    t.not(code, 0, `${what}: non-zero exit (${code})`);
    t.not(code, -999, `${what}: exits by itself`);
    const err = proc.stderr.join('\n');
    t.match(err, reason, `${what}: says so (${err.trim().split('\n').at(-1)})`);
    t.match(err, /redis:\/\/127\.0\.0\.1:1921[78]/, `${what}: names the server`);
    t.notOk(proc.lines.join('\n').includes('secret-pw'), `${what}: never prints the password`);
  }
});

t.test('the password changes under a running gateway: the state store and the rate limiter say authentication failed', async (t) => {
  gw = await startGateway({
    ...base(redis!.url, 'running'),
    log: { level: 'info', access: false },
    rate_limit: { on_redis_error: 'open', redis_timeout_ms: 200 },
    // The state breaker stays closed: every admin write is tried, and says why it failed.
    dependencies: { redis: { state: { volume_threshold: 1_000_000 } } },
    // A remote replica: the gateway's own admin port (its /healthz), so no other port is used.
    deployments: [{
      model: 'r', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:19219'], health_check: { enabled: false },
      policies: { rate_limit: { requests_per_minute: 1_000_000 }, cache: { enabled: false } },
    }],
  });
  const admin = adminClient(gw.adminUrl);
  t.equal((await httpRequest(`${gw.url}/r-1/healthz`, { timeoutMs: 5_000 })).status, 200, 'rate-limited through Redis and answered');

  // Rotated on the server; every client is dropped and reconnects with the old one.
  const rotate = new Redis(redis!.url);
  await rotate.config('SET', 'requirepass', 'second-secret-pw');
  await rotate.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
  rotate.disconnect();

  const write = await eventually(async () => {
    const r = await admin.request('PUT', '/v1/models/r/traffic', { weights: { '1': 100 } });
    return r.status === 503 ? r : undefined;
  }, 10_000, 'an admin write to fail');
  t.match(write.body, { error: { code: 'SLUICE_ERR_DEPENDENCY_UNAVAILABLE', message: /^redis \(state\) is unavailable: authentication failed: WRONGPASS/ } }, `an admin write: ${write.text.slice(0, 200)}`);

  const limited = await eventually(async () => {
    await httpRequest(`${gw!.url}/r-1/healthz`, { timeoutMs: 5_000 });
    // The first failure may come before the client has heard why its connection went
    // ("no connection: closed by Redis or the network"): a changed reason is logged again.
    return jsonLogs(gw!).find((l) => l.msg === 'rate-limit store unavailable: checking this instance\'s own buckets (fail-open)' && /WRONGPASS/.test(String(l.err)));
  }, 10_000, 'the rate limiter to log why its store is unavailable');
  t.match(limited.err, /^rate-limit store unavailable: authentication failed: WRONGPASS/, `the rate limiter: ${String(limited.err)}`);

  const polled = await eventually(() => jsonLogs(gw!).find((l) => l.msg === 'could not read the shared desired state'), 10_000, 'the reconcile to log its failure');
  t.match(JSON.stringify(polled.err), /cannot read state \(authentication failed: WRONGPASS/, 'the reconcile says so too');

  t.notOk(gw.lines.join('\n').includes('secret-pw'), 'no password in any log line');
  t.equal(await gw.stop(), 0, 'the gateway exits 0');
  gw = undefined;
});
