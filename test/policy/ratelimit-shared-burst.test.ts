// A limit shared through Redis keeps limiting under a burst: two instances on one Redis,
// a hundred concurrent requests to each at once, admit the limit between them with the
// default rate_limit.redis_timeout_ms, even on a busy machine (a check's time includes the
// busy worker reading Redis's reply). With Redis gone and `on_redis_error: open`, each
// instance falls back to its own bucket and admits at most the limit itself, not everything,
// and the tokens of its answers are charged there.

import t from 'tap';
import { startRedis } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { byStatus, gwMetric } from '../helpers/policy.js';
import { eventually, jsonLogs } from '../helpers/procs.js';
import { InstancesOnRedis, type Instance } from '../helpers/traffic.js';

t.setTimeout(180_000);

// Ports 19850-19874 belong to this file: Redis 19850; gateway A 19851 (admin 19852),
// replicas 19855-19864; gateway B 19853 (admin 19854), replicas 19865-19874.
const RANGE = { from: 19855, to: 19874 };
const LIMIT = 10;
// Per minute, so that a burst that takes seconds on a loaded machine refills little: one
// token per 6 s, allowed for from the burst's measured duration.
const REFILL_MS = 60_000 / LIMIT;
const BURST = 100;
// Fewer than one generation of the simulator (20 tokens and the prompt's).
const TPM = 20;
const TOKEN_KEY = 'tok-key-000000000000000000001';
const instances = new InstancesOnRedis(t, RANGE);

async function start(name: string, port: number, replicas: { from: number; to: number }): Promise<Instance> {
  return instances.startAt(name, port, replicas, {
    workers: 2,
    rate_limit: { on_redis_error: 'open' },
    api_keys: [{ name: 'tok', key: TOKEN_KEY, limits: { tokens_per_minute: TPM } }],
    deployments: [
      { model: 'rl', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: LIMIT }, cache: { enabled: false } } },
      { model: 'rt', version: '1', runtime: 'sim', policies: { cache: { enabled: false } } },
    ],
  });
}

/** BURST concurrent requests to each instance at once; the replies per instance and how long it took. */
async function burst(targets: readonly Instance[]): Promise<{ replies: Reply[][]; ms: number }> {
  const started = performance.now();
  const replies = await Promise.all(targets.map((i) => Promise.all(
    Array.from({ length: BURST }, () => httpRequest(`${i.gw.url}/rl-1/_sim/echo`, { timeoutMs: 30_000 })),
  )));
  return { replies, ms: performance.now() - started };
}

const refilled = (ms: number): number => Math.ceil(ms / REFILL_MS);

let A: Instance;
let B: Instance;

t.before(async () => {
  instances.redis = await startRedis(19850);
  [A, B] = await Promise.all([start('A', 19851, { from: 19855, to: 19864 }), start('B', 19853, { from: 19865, to: 19874 })]);
});

t.test('Redis up: a burst through both instances admits the limit between them', async (t) => {
  const { replies, ms } = await burst([A, B]);
  const counts = byStatus(replies.flat());
  t.equal((counts[200] ?? 0) + (counts[429] ?? 0), 2 * BURST, `every answer is 200 or 429 (${JSON.stringify(counts)})`);
  const admitted = counts[200] ?? 0;
  t.ok(admitted >= LIMIT && admitted <= LIMIT + refilled(ms), `${admitted} admitted of ${2 * BURST} in ${Math.round(ms)} ms (limit ${LIMIT} per minute, shared)`);
  for (const i of [A, B]) t.equal(await gwMetric(i.gw, 'sluice_rate_limit_store_errors_total', { deployment: 'rl-1' }), 0, `${i.name}: every check was answered by Redis`);
});

t.test('Redis down, on_redis_error: open: each instance admits at most the limit on its own', async (t) => {
  await instances.redis!.stop();
  instances.redis = undefined;
  const errorsBefore = await Promise.all([A, B].map((i) => gwMetric(i.gw, 'sluice_rate_limit_store_errors_total', { deployment: 'rl-1' })));
  const { replies, ms } = await burst([A, B]);
  for (const [n, i] of [A, B].entries()) {
    const counts = byStatus(replies[n]!);
    const admitted = counts[200] ?? 0;
    t.equal(admitted + (counts[429] ?? 0), BURST, `${i.name}: every answer is 200 or 429 (${JSON.stringify(counts)})`);
    t.ok(admitted >= 1 && admitted <= LIMIT + refilled(ms), `${i.name}: ${admitted} admitted of ${BURST} in ${Math.round(ms)} ms (its own bucket of ${LIMIT})`);
    const refused = replies[n]!.find((r) => r.status === 429);
    t.equal(refused?.headers['ratelimit-limit'], String(LIMIT), `${i.name}: a refusal carries RateLimit-Limit`);
    t.ok(Number(refused?.headers['retry-after']) >= 1, `${i.name}: and Retry-After`);
    t.equal(await gwMetric(i.gw, 'sluice_rate_limit_store_errors_total', { deployment: 'rl-1' }) - errorsBefore[n]!, BURST, `${i.name}: every check that missed Redis is counted`);
    const warning = await eventually(() => jsonLogs(i.gw).find((l) => l.level === 'warn' && /rate-limit store unavailable/.test(String(l.msg))), 5_000, `${i.name}: a warning in the logs`);
    t.match(warning, { msg: /own buckets \(fail-open\)/ }, `${i.name}: the warning says the instance's own buckets decide`);
  }
});

t.test('Redis down, on_redis_error: open: the tokens of an answer are charged to the instance\'s own bucket', async (t) => {
  const statuses: number[] = [];
  for (let i = 0; i < 5 && !statuses.includes(429); i++) {
    const r = await httpRequest(`${A.gw.url}/rt-1/api/generate`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN_KEY}` }, body: '{"model":"demo","prompt":"hello there","stream":false}', timeoutMs: 10_000,
    });
    statuses.push(r.status);
  }
  t.equal(statuses[0], 200, 'the first generation is admitted: the bucket holds a token');
  // The charge is made once the answer has ended, so the one right after may still pass.
  t.ok(statuses.includes(429) && statuses.indexOf(429) <= 2, `then the key is out of tokens of ${TPM} per minute (${statuses.join(', ')})`);
});
