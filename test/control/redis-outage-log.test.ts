// A Redis outage is logged once per reason, not at every probe of the dependency breakers:
// the state store's polls (traffic, desired state) and the rate limiter each say why Redis
// is away when it goes, and again only when the reason changes, however long it lasts.
// Before, each failed probe (every reset_timeout_ms) logged a warning with its stack, and
// the rate limiter's reason alternated with the open breaker's: lines by the thousand an hour.

import t from 'tap';
import { startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, sleep, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27445-27447 belong to this file: Redis 27445, the gateway 27446 (admin 27447).
const REDIS_PORT = 27445;
let redis: RedisServer | undefined;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await redis?.stop();
});

const said = (msg: string): number => jsonLogs(gw!).filter((l) => l.msg === msg).length;

t.test('an 8 s outage with probes every 500 ms: each loop says it once per reason', async (t) => {
  redis = await startRedis(REDIS_PORT);
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 27446 },
    admin: { host: '127.0.0.1', port: 27447 },
    ports: { from: REDIS_PORT, to: REDIS_PORT },
    redis: { url: redis.url },
    log: { level: 'info', access: false },
    rate_limit: { on_redis_error: 'open', redis_timeout_ms: 300 },
    dependencies: { redis: { rate_limit: { reset_timeout_ms: 500 }, state: { reset_timeout_ms: 500 } } },
    // A remote replica: the gateway's own admin port (its /healthz), so no other port is used.
    deployments: [{
      model: 'r', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:27447'], health_check: { enabled: false },
      policies: { rate_limit: { requests_per_minute: 1_000_000 }, cache: { enabled: false } },
    }],
  });
  await redis.stop();
  const statuses = new Set<number>();
  const until = Date.now() + 8_000;
  while (Date.now() < until) {
    statuses.add((await httpRequest(`${gw.url}/r-1/healthz`, { timeoutMs: 5_000 })).status);
    await sleep(100);
  }
  t.same([...statuses], [200], 'every request admitted by the gateway\'s own buckets');
  // A worker's lines reach stdout within log.access_flush_ms (buffered).
  await sleep(1_500);
  const probes = jsonLogs(gw).filter((l) => l.msg === 'dependency failing: circuit breaker open, its calls fail at once until a probe succeeds').length;
  t.ok(probes >= 2, `both breakers opened (${probes})`);
  const rules: Array<[string, number]> = [
    ['could not read the shared traffic', said('could not read the shared traffic')],
    ['could not read the shared desired state', said('could not read the shared desired state')],
    ['rate-limit store unavailable: checking this instance\'s own buckets (fail-open)', said('rate-limit store unavailable: checking this instance\'s own buckets (fail-open)')],
  ];
  for (const [msg, n] of rules) t.ok(n >= 1 && n <= 3, `'${msg}': said ${n} times (once per reason), not at each probe`);

  redis = await startRedis(REDIS_PORT);
  await eventually(async () => {
    await httpRequest(`${gw!.url}/r-1/healthz`, { timeoutMs: 5_000 });
    return said('dependency answers again: circuit breaker closed') >= 2 || undefined;
  }, 20_000, 'both breakers to close');
  t.pass('Redis back: the breakers close');
});
