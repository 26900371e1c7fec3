// A Redis connection whose replies stop without a reset (a peer gone without a word, a
// blackholed route, a reply cut mid-way) is replaced by the gateway: the state store and
// the rate limiter connect again and follow Redis, rather than timing every command out on
// the dead connection until a restart. A proxy between the gateway and a real redis-server
// stalls the connections open at that moment; new connections pass.

import { connect, createServer, type Socket } from 'node:net';
import t from 'tap';
import { adminClient, redisCommand, startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27400-27403 belong to this file: Redis 27400, the proxy 27401, the gateway 27402 (admin 27403).
const REDIS_PORT = 27400;
const PROXY_PORT = 27401;

/** The gateway's side and Redis's side of one proxied connection, and how far Redis's replies go. */
interface Pair { readonly client: Socket; readonly server: Socket; replies: 'pass' | 'half of the next' | 'none' }

const pairs = new Set<Pair>();
let closedByGateway = 0;
const proxy = createServer((client) => {
  const pair: Pair = { client, server: connect(REDIS_PORT, '127.0.0.1'), replies: 'pass' };
  pairs.add(pair);
  client.on('data', (d: Buffer) => pair.server.write(d));
  pair.server.on('data', (d: Buffer) => {
    if (pair.replies === 'pass') client.write(d);
    else if (pair.replies === 'half of the next') {
      client.write(d.subarray(0, Math.max(1, d.length >> 1)));
      pair.replies = 'none';
    }
  });
  client.on('close', () => {
    if (pair.replies !== 'pass') closedByGateway++;
    pair.server.destroy();
    pairs.delete(pair);
  });
  client.on('error', () => pair.server.destroy());
  pair.server.on('error', () => client.destroy());
});

let redis: RedisServer | undefined;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  for (const p of pairs) p.client.destroy();
  await new Promise((resolve) => proxy.close(resolve));
  await redis?.stop();
});

t.test('a stalled Redis connection is replaced: admin writes, state and shared limits work again', async (t) => {
  redis = await startRedis(REDIS_PORT);
  await new Promise<void>((resolve) => proxy.listen(PROXY_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 27402 },
    admin: { host: '127.0.0.1', port: 27403 },
    ports: { from: 27400, to: 27400 },
    redis: { url: `redis://127.0.0.1:${PROXY_PORT}` },
    log: { level: 'info', access: false },
    rate_limit: { on_redis_error: 'open', redis_timeout_ms: 300 },
    dependencies: { redis: { state: { timeout_ms: 500 } } },
    // A remote replica: the gateway's own admin port (its /healthz), so no other port is used.
    deployments: [{
      model: 'r', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:27403'], health_check: { enabled: false },
      policies: { rate_limit: { requests_per_minute: 1_000_000 }, cache: { enabled: false } },
    }],
  });
  const admin = adminClient(gw.adminUrl);
  const bucketStamp = (): Promise<unknown> => redisCommand(REDIS_PORT, 'HGET', 'sluice:rl:dep:r-1:rpm', 'last');
  t.equal((await httpRequest(`${gw.url}/r-1/healthz`, { timeoutMs: 5_000 })).status, 200, 'answered, its limit checked in Redis');
  t.not(await bucketStamp(), null, 'the bucket is in Redis');

  // The next reply on each open connection goes half-way, then nothing more: the gateway's
  // state polls (every 400 ms) and rate-limit checks wait on them.
  for (const p of pairs) p.replies = 'half of the next';
  const before = await bucketStamp();
  const started = Date.now();
  // A write sent on a stalled connection reaches Redis (only its reply is lost): each try has its own name.
  let tries = 0;
  const added = await eventually(async () => {
    await httpRequest(`${gw!.url}/r-1/healthz`, { timeoutMs: 5_000 });
    const r = await admin.post('/v1/keys', { name: `after-stall-${tries++}` });
    return r.status === 201 ? r : undefined;
  }, 20_000, 'an API key to be stored through the gateway again');
  t.equal(added.status, 201, `an admin write is stored again ${Date.now() - started} ms after the stall`);
  t.ok(closedByGateway >= 1, `the gateway closed the stalled connections (${closedByGateway})`);
  await eventually(async () => {
    await httpRequest(`${gw!.url}/r-1/healthz`, { timeoutMs: 5_000 });
    const stamp = await bucketStamp();
    return stamp !== before ? stamp : undefined;
  }, 20_000, 'the rate limit to be checked in Redis again');
  t.pass('the rate limit is checked in Redis again (shared, not per instance)');
});
