// A gateway started on a Redis whose memory settings would hurt the shared state says so:
// maxmemory with noeviction (Redis's default policy) refuses every write once the shared
// cache fills it, admin changes and rate-limit checks included; an allkeys-* policy may
// evict the desired state. volatile-lru, or no maxmemory, is said nothing of.

import t from 'tap';
import { redisCommand, startRedis, type RedisServer } from '../helpers/control.js';
import { jsonLogs, startGateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27470-27472 belong to this file: Redis 27470, the gateway 27471 (admin 27472).
const REDIS_PORT = 27470;
let redis: RedisServer | undefined;

t.teardown(async () => {
  await redis?.stop();
});

/** The warnings a gateway started on the Redis as it is now logs about its memory settings. */
async function memoryWarnings(): Promise<string[]> {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 27471 },
    admin: { host: '127.0.0.1', port: 27472 },
    ports: { from: REDIS_PORT, to: REDIS_PORT },
    log: { level: 'info', access: false },
    redis: { url: redis!.url },
    deployments: [],
  });
  await gw.stop();
  return jsonLogs(gw).filter((l) => l.level === 'warn' && /maxmemory/.test(String(l.msg))).map((l) => String(l.msg));
}

t.test('maxmemory-policy: noeviction and allkeys-* are said at start-up, volatile-lru is not', async (t) => {
  redis = await startRedis(REDIS_PORT);
  t.same(await memoryWarnings(), [], 'no maxmemory: nothing said');

  await redisCommand(REDIS_PORT, 'CONFIG', 'SET', 'maxmemory', '100mb');
  await redisCommand(REDIS_PORT, 'CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
  const noeviction = await memoryWarnings();
  t.equal(noeviction.length, 1, 'maxmemory with noeviction: one warning');
  t.match(noeviction[0], /^redis redis:\/\/127\.0\.0\.1:27470 has maxmemory 104857600 with maxmemory-policy noeviction: once the shared cache fills it, every admin change fails \(OOM\)/, noeviction[0]);
  t.match(noeviction[0], /set maxmemory-policy volatile-lru/, 'saying what to set');

  await redisCommand(REDIS_PORT, 'CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
  const allkeys = await memoryWarnings();
  t.match(allkeys, [/maxmemory-policy allkeys-lru: once full it may evict the desired state/], 'allkeys-lru: may evict the desired state');

  await redisCommand(REDIS_PORT, 'CONFIG', 'SET', 'maxmemory-policy', 'volatile-lru');
  t.same(await memoryWarnings(), [], 'volatile-lru: nothing said');
});
