// A request two rate limits refuse at once: Retry-After is when every one of them admits it
// again, not when the first refusing one does. A deployment limited to 1 request per second
// and 2 per minute, after two requests a second apart: the next one is refused by both, and
// the answer is the per-minute limit's wait (about 29 s), its name, its RateLimit-*. The same
// in the shared in-memory buckets and in Redis. (It said Retry-After 1, the per-second
// limit's: a client that waited as told was refused again, with Retry-After 28.)

import t, { type Test } from 'tap';
import { reapServers, startRedis, type RedisServer } from '../helpers/control.js';
import { errorOf, generate } from '../helpers/policy.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 22920-22929 belong to this file: replicas 22920-22922 (local) and 22923-22925
// (Redis), Redis itself on 22926.
const RANGE = { from: 22920, to: 22926 };

let gw: Gateway | undefined;
let gwR: Gateway | undefined;
let redis: RedisServer | undefined;

const deployments = [
  {
    model: 'two', version: '1', runtime: 'sim', args: ['--ttft-ms', '1', '--token-ms', '1', '--tokens', '2'],
    policies: { rate_limit: { requests_per_second: 1, requests_per_minute: 2 }, cache: { enabled: false } },
  },
];

t.teardown(async () => {
  await Promise.all([gw?.stop(), gwR?.stop()]);
  await redis?.stop();
  await reapServers([], RANGE);
});

async function bothRefuse(t: Test, g: Gateway): Promise<void> {
  t.equal((await generate(g, 'two-1')).status, 200, 'the first request');
  await sleep(1_100);
  t.equal((await generate(g, 'two-1')).status, 200, 'the second, a second later: the per-minute limit is used up');
  const refused = await generate(g, 'two-1');
  t.equal(refused.status, 429, 'the next one at once: both limits refuse it');
  const retryAfter = Number(refused.headers['retry-after']);
  t.ok(retryAfter >= 25 && retryAfter <= 30, `Retry-After ${refused.headers['retry-after']}: the per-minute limit's wait, not the per-second one's`);
  t.match(errorOf(refused)?.message, /requests_per_minute \(2\) of deployment two-1; retry in \d+ s/, 'the message names the limit that frees last');
  t.equal(refused.headers['ratelimit-limit'], '2', 'RateLimit-Limit: that limit');
  t.ok(Number(refused.headers['ratelimit-reset']) >= retryAfter, `RateLimit-Reset ${refused.headers['ratelimit-reset']}`);
  await sleep(1_100);
  const again = await generate(g, 'two-1');
  t.equal(again.status, 429, 'a second later: still refused');
  t.ok(Math.abs(Number(again.headers['retry-after']) - (retryAfter - 1)) <= 1, `and told the same wait, a second less (${again.headers['retry-after']})`);
}

t.test('in the shared in-memory buckets', async (t) => {
  gw = await startGateway({ ports: { from: 22920, to: 22922 }, log: { level: 'info', access: false }, deployments });
  await bothRefuse(t, gw);
});

t.test('in Redis', async (t) => {
  redis = await startRedis(22926);
  gwR = await startGateway({ ports: { from: 22923, to: 22925 }, redis: { url: redis.url }, log: { level: 'info', access: false }, deployments });
  await bothRefuse(t, gwR);
});
