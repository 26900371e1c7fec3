// A Redis connection closed under the gateway without an error (CLIENT KILL, a Redis
// restart) is said as such by the rate limiter's warning, "no connection: closed by Redis
// or the network", not in ioredis's words ("Stream isn't writeable and enableOfflineQueue
// options is false"), which name no cause an operator can act on.

import t from 'tap';
import { redisCommand, startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 27440-27442 belong to this file: Redis 27440, the gateway 27441 (admin 27442).
const REDIS_PORT = 27440;
let redis: RedisServer | undefined;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await redis?.stop();
});

const UNAVAILABLE = 'rate-limit store unavailable: checking this instance\'s own buckets (fail-open)';

t.test('CLIENT KILL: the rate limiter says the connection was closed', async (t) => {
  redis = await startRedis(REDIS_PORT);
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 27441 },
    admin: { host: '127.0.0.1', port: 27442 },
    ports: { from: REDIS_PORT, to: REDIS_PORT },
    redis: { url: redis.url },
    log: { level: 'info', access: false },
    // A remote replica: the gateway's own admin port (its /healthz), so no other port is used.
    deployments: [{
      model: 'r', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:27442'], health_check: { enabled: false },
      policies: { rate_limit: { requests_per_minute: 1_000_000 }, cache: { enabled: false } },
    }],
  });
  t.equal((await httpRequest(`${gw.url}/r-1/healthz`, { timeoutMs: 5_000 })).status, 200, 'answered, its limit checked in Redis');

  // The client reconnects within ~100 ms: requests sent right after the kill find it closed.
  const warned = await eventually(async () => {
    await redisCommand(REDIS_PORT, 'CLIENT', 'KILL', 'TYPE', 'normal');
    await Promise.all(Array.from({ length: 20 }, () => httpRequest(`${gw!.url}/r-1/healthz`, { timeoutMs: 5_000 })));
    const lines = jsonLogs(gw!).filter((l) => l.msg === UNAVAILABLE);
    return lines.length > 0 ? lines : undefined;
  }, 30_000, 'a request to find the rate limiter\'s connection closed');
  t.match(warned[0]!.err, /^rate-limit store unavailable: no connection: closed by Redis or the network/, `the first warning: ${String(warned[0]!.err)}`);
  t.notOk(warned.some((l) => /Stream isn't writeable/.test(String(l.err))), 'none in ioredis\'s words');
});
