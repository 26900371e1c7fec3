// Rate limits below one per period: 0.5 requests per second is one request every 2 s. A
// bucket holds at least one token (a request needs a whole one) and refills at the limit,
// so such a limit admits a burst of one, then one per 1/limit periods; Retry-After and
// RateLimit-Reset say when, and RateLimit-Limit the configured value. The same in the
// shared in-memory buckets and in Redis, for deployments and API keys, per second, per
// minute and for tokens per minute. (Such a bucket, as big as its limit, refused every
// request forever: 429, Retry-After 1.)

import t, { type Test } from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { reapServers, redisCommand, startRedis, type RedisServer } from '../helpers/control.js';
import { errorOf, generate } from '../helpers/policy.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 19300-19305 belong to this file: replicas 19300-19302 (local) and 19304-19305
// (Redis), Redis itself on 19303.
const KEYS = {
  slow: 'slow-key-000000000000000001',
  tok: 'tok-key-0000000000000000002',
  redis: 'redis-key-00000000000000003',
};
const withKey = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

let gw: Gateway;
let gwR: Gateway | undefined;
let redis: RedisServer | undefined;

const api_keys = [
  { name: 'slow', key: KEYS.slow, deployment_limits: { requests_per_minute: 0.5 } },
  { name: 'tok', key: KEYS.tok, limits: { tokens_per_minute: 0.5 } },
  { name: 'redis-key', key: KEYS.redis, limits: { requests_per_minute: 0.25 } },
];

t.before(async () => {
  gw = await startGateway({
    ports: { from: 19300, to: 19302 },
    log: { level: 'info', access: false },
    api_keys,
    deployments: [
      { model: 'half', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_second: 0.5 } } },
      { model: 'free', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'] },
    ],
  });
});

t.teardown(async () => {
  await Promise.all([gw?.stop(), gwR?.stop()]);
  await redis?.stop();
  await reapServers([], { from: 19300, to: 19305 });
});

/** An admitted reply: RateLimit-Limit the configured value, the one token taken. */
function checkAdmitted(t: Test, r: Reply, limit: string, reset: number): void {
  t.equal(r.status, 200, `admitted (${r.status} ${r.body.slice(0, 200)})`);
  t.equal(r.headers['ratelimit-limit'], limit, 'RateLimit-Limit: the configured limit');
  t.equal(r.headers['ratelimit-remaining'], '0', 'RateLimit-Remaining: 0 (its one token taken)');
  t.equal(Number(r.headers['ratelimit-reset']), reset, `RateLimit-Reset: ${reset} s until the token is back`);
}

/** A refusal right after an admission: the next token is `seconds` away. */
function checkRefused(t: Test, r: Reply, limit: string, seconds: number): void {
  t.equal(r.status, 429, 'the next one at once is refused');
  t.equal(errorOf(r)?.code, 'SLUICE_ERR_RATE_LIMITED');
  const retryAfter = Number(r.headers['retry-after']);
  t.ok(retryAfter >= seconds - 1 && retryAfter <= seconds, `Retry-After ${r.headers['retry-after']} (a token every ${seconds} s)`);
  t.equal(r.headers['ratelimit-limit'], limit, 'RateLimit-Limit');
  t.equal(r.headers['ratelimit-remaining'], '0', 'RateLimit-Remaining');
  t.ok(Number(r.headers['ratelimit-reset']) <= seconds && Number(r.headers['ratelimit-reset']) >= 1, `RateLimit-Reset ${r.headers['ratelimit-reset']}`);
}

t.test('requests_per_second: 0.5 admits one request every 2 s', async (t) => {
  const first = await httpRequest(`${gw.url}/half-1/_sim/echo`);
  checkAdmitted(t, first, '0.5', 2);
  const second = await httpRequest(`${gw.url}/half-1/_sim/echo`);
  checkRefused(t, second, '0.5', 2);
  t.match(errorOf(second)?.message, /requests_per_second \(0\.5\) of deployment half-1/, 'the message names the limit as configured');
  await sleep(1_000);
  t.equal((await httpRequest(`${gw.url}/half-1/_sim/echo`)).status, 429, 'a second later: still refused');
  await sleep(1_200);
  const third = await httpRequest(`${gw.url}/half-1/_sim/echo`);
  t.equal(third.status, 200, '2 s after the first: admitted again');
  t.equal((await httpRequest(`${gw.url}/half-1/_sim/echo`)).status, 429, 'and only that one');
});

t.test('requests_per_minute: 0.5 of an API key on a deployment: one request, then one every 2 min', async (t) => {
  const first = await httpRequest(`${gw.url}/free-1/_sim/echo`, { headers: withKey(KEYS.slow) });
  checkAdmitted(t, first, '0.5', 120);
  checkRefused(t, await httpRequest(`${gw.url}/free-1/_sim/echo`, { headers: withKey(KEYS.slow) }), '0.5', 120);
  t.equal((await httpRequest(`${gw.url}/free-1/_sim/echo`)).status, 200, 'other callers are not limited by it');
});

t.test('tokens_per_minute: 0.5 of an API key admits a request, charges its tokens, then waits for them', async (t) => {
  const first = await generate(gw, 'free-1', { headers: withKey(KEYS.tok) });
  t.equal(first.status, 200, 'the first generation is admitted (the bucket holds one token)');
  t.equal(first.headers['ratelimit-limit'], '0.5', 'RateLimit-Limit: the configured limit');
  const b = JSON.parse(first.body) as { eval_count: number; prompt_eval_count: number };
  const cost = b.eval_count + b.prompt_eval_count;
  const second = await generate(gw, 'free-1', { headers: withKey(KEYS.tok) });
  t.equal(second.status, 429, 'the next is refused: its tokens were charged');
  // The bucket is at 1 - cost; a token is back after cost tokens at 0.5 a minute.
  const expected = cost * 120;
  const retryAfter = Number(second.headers['retry-after']);
  t.ok(retryAfter >= expected - 2 && retryAfter <= expected, `Retry-After ${retryAfter} s (${cost} tokens at 0.5 per minute: ${expected} s)`);
});

t.test('Redis: the same limits, shared through Redis', async (t) => {
  redis = await startRedis(19303);
  gwR = await startGateway({
    ports: { from: 19304, to: 19305 },
    redis: { url: redis.url },
    rate_limit: { on_redis_error: 'closed', redis_timeout_ms: 1_000 },
    log: { level: 'info', access: false },
    api_keys,
    deployments: [
      { model: 'half', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_second: 0.5 } } },
      { model: 'free', version: '1', runtime: 'sim' },
    ],
  });
  const g = gwR;
  const first = await httpRequest(`${g.url}/half-1/_sim/echo`);
  checkAdmitted(t, first, '0.5', 2);
  checkRefused(t, await httpRequest(`${g.url}/half-1/_sim/echo`), '0.5', 2);
  await sleep(2_200);
  t.equal((await httpRequest(`${g.url}/half-1/_sim/echo`)).status, 200, '2 s later: admitted again');
  t.equal((await httpRequest(`${g.url}/half-1/_sim/echo`)).status, 429, 'and only that one');

  // A key's 0.25 per minute over all deployments: a request every 4 min.
  const k1 = await httpRequest(`${g.url}/free-1/_sim/echo`, { headers: withKey(KEYS.redis) });
  checkAdmitted(t, k1, '0.25', 240);
  checkRefused(t, await httpRequest(`${g.url}/free-1/_sim/echo`, { headers: withKey(KEYS.redis) }), '0.25', 240);
  // Its Redis key lasts at least until the bucket is full again (4 min), not two periods:
  // a key gone earlier is a full bucket, a token too soon.
  const ttl = Number(await redisCommand(redis.port, 'PTTL', 'sluice:rl:key:redis-key:rpm'));
  t.ok(ttl >= 239_000, `the bucket's key outlives the wait for its token (PTTL ${ttl} ms)`);
});
