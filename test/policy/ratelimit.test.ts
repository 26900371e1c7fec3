// Rate limits: token buckets per deployment, per API key and per key on a deployment, in
// memory shared by every worker thread, or in a real Redis shared by several gateway
// instances. Requests per second/minute are taken at admission; LLM tokens are charged from
// each response (Ollama eval counts, OpenAI usage, or one per streamed event). A refused
// request gets 429 with Retry-After and RateLimit-* headers; so do admitted ones (RateLimit-*).
// When Redis goes away, `on_redis_error` decides: the instance's own buckets (counted,
// logged) or 503; never hang.

import t, { type Test } from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { reapServers, startRedis, type RedisServer } from '../helpers/control.js';
import { byStatus, errorOf, gwMetric, pool, simConfig } from '../helpers/policy.js';
import { eventually, jsonLogs, replicaPorts, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18760-18779 belong to this file (test/policy uses 18700-18799).
const KEYS = {
  alice: 'alice-key-0000000000000001',
  bob: 'bob-key-00000000000000000002',
  tokA: 'tok-a-key-000000000000000001',
  tokB: 'tok-b-key-000000000000000002',
  tokC: 'tok-c-key-000000000000000003',
  tokD: 'tok-d-key-000000000000000004',
  tokE: 'tok-e-key-000000000000000005',
  tokF: 'tok-f-key-000000000000000006',
  redisTok: 'redis-tok-key-00000000000007',
  perDep: 'per-dep-key-0000000000000008',
  free: 'free-key-00000000000000000009',
  tokG: 'tok-g-key-000000000000000010',
  tokH: 'tok-h-key-000000000000000011',
};
const TPM = 100;
const RPS = 5;
const tokenKey = (name: string, key: string): Record<string, unknown> => ({ name, key, limits: { tokens_per_minute: TPM } });

let gw: Gateway;
let gwW: Gateway | undefined;
let gwOpen: Gateway | undefined;
let gwClosed: Gateway | undefined;
let redis: RedisServer | undefined;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18760, to: 18766 },
    log: { level: 'info', access: false },
    api_keys: [
      { name: 'alice', key: KEYS.alice, limits: { requests_per_minute: 5 } },
      { name: 'bob', key: KEYS.bob, deployment_limits: { requests_per_minute: 3 } },
      tokenKey('tok-a', KEYS.tokA), tokenKey('tok-b', KEYS.tokB), tokenKey('tok-c', KEYS.tokC), tokenKey('tok-d', KEYS.tokD), tokenKey('tok-e', KEYS.tokE), tokenKey('tok-f', KEYS.tokF),
      tokenKey('tok-g', KEYS.tokG), tokenKey('tok-h', KEYS.tokH),
      { name: 'per-dep', key: KEYS.perDep, deployment_limits: { tokens_per_minute: TPM } },
      { name: 'free', key: KEYS.free },
    ],
    deployments: [
      { model: 'rl', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 10 } } },
      { model: 'rk', version: '1', runtime: 'sim' },
      { model: 'rk', version: '2', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 8 } } },
      { model: 'tk', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '10'] },
      { model: 'tk', version: '2', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '10'] },
      { model: 'td', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '10'], policies: { rate_limit: { tokens_per_minute: TPM } } },
      { model: 'ps', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_second: RPS } } },
    ],
  });
});

t.teardown(async () => {
  await Promise.all([gw?.stop(), gwW?.stop(), gwOpen?.stop(), gwClosed?.stop()]);
  await redis?.stop();
  await reapServers([], { from: 18760, to: 18779 });
});

const withKey = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

/** `maxReset`: a token bucket charged after the response may be below zero, so refills take longer. */
function check429(t: Test, r: Reply, limit: number, maxReset = 60): void {
  t.equal(r.status, 429);
  t.match(r.headers['content-type'], /application\/json/);
  t.equal(errorOf(r)?.code, 'SLUICE_ERR_RATE_LIMITED');
  const retryAfter = Number(r.headers['retry-after']);
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${r.headers['retry-after']}`);
  t.equal(r.headers['ratelimit-limit'], String(limit), 'RateLimit-Limit');
  t.equal(r.headers['ratelimit-remaining'], '0', 'RateLimit-Remaining');
  const reset = Number(r.headers['ratelimit-reset']);
  t.ok(Number.isInteger(reset) && reset >= 1 && reset <= maxReset, `RateLimit-Reset ${r.headers['ratelimit-reset']}`);
}

t.test('requests_per_minute: 10 admits exactly 10 of 30, with 429 and RateLimit-* headers', async (t) => {
  const replies: Reply[] = [];
  for (let i = 0; i < 30; i++) replies.push(await httpRequest(`${gw.url}/rl-1/_sim/echo`));
  t.same(byStatus(replies), { 200: 10, 429: 20 }, 'exactly 10 admitted');
  t.same(replies.slice(0, 10).map((r) => r.status), Array(10).fill(200), 'the first 10');
  t.same(replies.slice(0, 10).map((r) => r.headers['ratelimit-limit']), Array(10).fill('10'), 'admitted responses carry RateLimit-Limit');
  t.same(replies.slice(0, 10).map((r) => r.headers['ratelimit-remaining']), ['9', '8', '7', '6', '5', '4', '3', '2', '1', '0'], 'and a falling RateLimit-Remaining');
  t.ok(replies.slice(0, 10).every((r) => Number(r.headers['ratelimit-reset']) >= 1), 'and RateLimit-Reset');
  check429(t, replies[10]!, 10);
  check429(t, replies[29]!, 10);
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'rl-1', code: '429' }), 20, 'the 429s are counted');
});

t.test('requests_per_second: a burst over the limit gets 429; a second later requests pass again', async (t) => {
  const burst = async (): Promise<{ replies: Reply[]; ms: number }> => {
    const started = performance.now();
    const replies = await pool(15, 15, () => httpRequest(`${gw.url}/ps-1/_sim/echo`));
    return { replies, ms: performance.now() - started };
  };
  for (const round of ['a full bucket', 'a second later']) {
    if (round !== 'a full bucket') await sleep(1_100);
    const { replies, ms } = await burst();
    const counts = byStatus(replies);
    const admitted = counts[200] ?? 0;
    t.equal(admitted + (counts[429] ?? 0), 15, `${round}: every answer is 200 or 429 (${JSON.stringify(counts)})`);
    // The bucket gives one request back every 1000 / RPS ms while the burst lasts.
    t.ok(admitted >= RPS && admitted <= RPS + Math.ceil(ms / (1000 / RPS)), `${round}: ${admitted} of 15 admitted in ${Math.round(ms)} ms (limit ${RPS} per second)`);
    t.ok(replies.filter((r) => r.status === 200).every((r) => r.headers['ratelimit-limit'] === String(RPS)), 'admitted responses carry RateLimit-Limit');
    const refused = replies.find((r) => r.status === 429)!;
    check429(t, refused, RPS, 1);
    t.equal(refused.headers['retry-after'], '1', 'Retry-After: 1 (a token is back within a second)');
  }
});

t.test('per API key and per key on a deployment; a refused request takes nothing from other buckets', async (t) => {
  // bob: 3 per minute on each deployment separately.
  const bob1: Reply[] = [];
  const bob2: Reply[] = [];
  for (let i = 0; i < 5; i++) bob1.push(await httpRequest(`${gw.url}/rk-1/_sim/echo`, { headers: withKey(KEYS.bob) }));
  for (let i = 0; i < 5; i++) bob2.push(await httpRequest(`${gw.url}/rk-2/_sim/echo`, { headers: withKey(KEYS.bob) }));
  t.same(bob1.map((r) => r.status), [200, 200, 200, 429, 429], 'bob: 3 of 5 on rk-1');
  t.same(bob2.map((r) => r.status), [200, 200, 200, 429, 429], 'bob: 3 of 5 on rk-2, counted apart from rk-1');
  check429(t, bob1[3]!, 3);
  // RateLimit-* report the tightest bucket, relative to its size: on rk-2, bob's 3 per
  // minute empties faster than the deployment's 8.
  const limitOf = (r: Reply): string[] => [r.headers['ratelimit-limit'] as string, r.headers['ratelimit-remaining'] as string];
  t.same(bob2.slice(0, 3).map(limitOf), [['3', '2'], ['3', '1'], ['3', '0']], 'bob on rk-2: his bucket, the tighter one');
  // alice: 5 per minute over all deployments (x-api-key form).
  const alice: Reply[] = [];
  for (let i = 0; i < 8; i++) alice.push(await httpRequest(`${gw.url}/rk-${(i % 2) + 1}/_sim/echo`, { headers: { 'x-api-key': KEYS.alice } }));
  t.same(alice.map((r) => r.status), [200, 200, 200, 200, 200, 429, 429, 429], 'alice: 5 of 8 across rk-1 and rk-2');
  check429(t, alice[5]!, 5);
  // On rk-2 (5 of 8 left after bob), alice's 2nd request leaves rk-2 at 4/8 and her key at
  // 3/5: the deployment's bucket is the tighter; by her 4th, 3/8 against 1/5: hers.
  t.same([limitOf(alice[1]!), limitOf(alice[3]!)], [['8', '4'], ['5', '1']], 'the tighter bucket changes as they drain');
  // Without a key, rk-1 has no limit at all.
  const anon = await pool(15, 5, () => httpRequest(`${gw.url}/rk-1/_sim/echo`));
  t.same(byStatus(anon), { 200: 15 }, 'anonymous requests to rk-1 are not limited');
  // rk-2 (8 per minute) gave 3 to bob and 2 to alice; the requests their keys refused took
  // nothing from it, so exactly 3 are left.
  const rest: Reply[] = [];
  for (let i = 0; i < 8; i++) rest.push(await httpRequest(`${gw.url}/rk-2/_sim/echo`));
  t.same(byStatus(rest), { 200: 3, 429: 5 }, 'rk-2 has exactly 8 - 3 - 2 = 3 left');
});

/** Sends one request at a time until the first 429 (at most `max`); returns the replies. */
async function untilLimited(send: () => Promise<Reply>, max = 40): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let i = 0; i < max; i++) {
    const r = await send();
    out.push(r);
    if (r.status === 429) break;
  }
  return out;
}

/** How many requests of `cost` tokens each a fresh bucket of TPM admits (admission needs 1 token left). */
function admittedFor(cost: number): number {
  let left = TPM;
  let n = 0;
  while (left >= 1) {
    left -= cost;
    n++;
  }
  return n;
}

const PROMPT = 'one two three four five';

t.test('tokens_per_minute charges the tokens each response reports', async (t) => {
  // Ollama, not streamed: prompt_eval_count + eval_count.
  const a = await untilLimited(() => httpRequest(`${gw.url}/tk-1/api/generate`, { method: 'POST', headers: withKey(KEYS.tokA), body: JSON.stringify({ model: 'demo', prompt: PROMPT, stream: false }) }));
  const first = JSON.parse(a[0]!.body) as { eval_count: number; prompt_eval_count: number };
  const costA = first.eval_count + first.prompt_eval_count;
  t.equal(costA, 15, 'each Ollama answer reports 10 + 5 tokens');
  t.equal(a.length - 1, admittedFor(costA), `Ollama: ${a.length - 1} admitted (${costA} tokens each, ${TPM} per minute)`);
  check429(t, a.at(-1)!, TPM, 120);

  // OpenAI chat, not streamed: usage.total_tokens.
  const b = await untilLimited(() => httpRequest(`${gw.url}/tk-1/v1/chat/completions`, { method: 'POST', headers: withKey(KEYS.tokB), body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: PROMPT }] }) }));
  const costB = (JSON.parse(b[0]!.body) as { usage: { total_tokens: number } }).usage.total_tokens;
  t.equal(b.length - 1, admittedFor(costB), `OpenAI usage: ${b.length - 1} admitted (${costB} tokens each)`);

  // Ollama streamed: the counts are on the final NDJSON line.
  const c = await untilLimited(() => httpRequest(`${gw.url}/tk-1/api/generate`, { method: 'POST', headers: withKey(KEYS.tokC), body: JSON.stringify({ model: 'demo', prompt: PROMPT }) }));
  const last = JSON.parse(c[0]!.body.trim().split('\n').at(-1)!) as { eval_count: number; prompt_eval_count: number };
  t.equal(c.length - 1, admittedFor(last.eval_count + last.prompt_eval_count), `Ollama streamed: ${c.length - 1} admitted`);

  // OpenAI legacy completions streamed with include_usage: every content chunk carries a
  // zero usage (Ollama's quirk), the last one the real total.
  const e = await untilLimited(() => httpRequest(`${gw.url}/tk-1/v1/completions`, {
    method: 'POST', headers: withKey(KEYS.tokE),
    body: JSON.stringify({ model: 'demo', prompt: PROMPT, stream: true, stream_options: { include_usage: true } }),
  }));
  const usageLine = e[0]!.body.split('\n').filter((l) => l.includes('"total_tokens"')).map((l) => JSON.parse(l.slice(6)) as { usage: { total_tokens: number } }).at(-1)!;
  t.equal(usageLine.usage.total_tokens, 15);
  t.equal(e.length - 1, admittedFor(15), `streamed usage: ${e.length - 1} admitted (15 tokens each, not the zero usages)`);

  // OpenAI chat streamed without usage: one token per streamed event.
  const d = await untilLimited(() => httpRequest(`${gw.url}/tk-1/v1/chat/completions`, { method: 'POST', headers: withKey(KEYS.tokD), body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: PROMPT }], stream: true }) }));
  const events = d[0]!.body.split('\n').filter((l) => l.startsWith('data: ')).length;
  t.equal(events, 12, '10 tokens, the finish chunk and [DONE]');
  const n = d.length - 1;
  t.ok(n >= admittedFor(events + 1) && n <= admittedFor(events - 2), `streamed events: ${n} admitted (~${events} tokens each; ${admittedFor(events)} expected)`);
  t.equal(d.at(-1)!.status, 429);
});

const generation = (deployment: string, headers: Record<string, string> = {}): Promise<Reply> =>
  httpRequest(`${gw.url}/${deployment}/api/generate`, { method: 'POST', headers, body: JSON.stringify({ model: 'demo', prompt: PROMPT, stream: false }) });
const costOf = (r: Reply): number => {
  const b = JSON.parse(r.body) as { eval_count: number; prompt_eval_count: number };
  return b.eval_count + b.prompt_eval_count;
};

t.test('tokens_per_minute takes nothing for a refusal, nor for an answer that reports no tokens', async (t) => {
  // A model list is a whole JSON answer without usage, as an MLflow prediction: no tokens,
  // as the token metrics and the cost count none. (Each was charged a token per JSON line.)
  const lists: Reply[] = [];
  for (let i = 0; i < TPM + 20; i++) lists.push(await httpRequest(`${gw.url}/tk-1/api/tags`, { headers: withKey(KEYS.tokG) }));
  t.same(byStatus(lists), { 200: TPM + 20 }, `${TPM + 20} model lists pass a limit of ${TPM} tokens a minute`);

  // Refused requests reach no model: Retry-After stays where the last answer left it.
  // (Each was charged a token, so a client retrying at once pushed its own wait further.)
  const a = await untilLimited(() => generation('tk-1', withKey(KEYS.tokH)));
  const first = Number(a.at(-1)!.headers['retry-after']);
  const refused: Reply[] = [];
  for (let i = 0; i < 30; i++) refused.push(await generation('tk-1', withKey(KEYS.tokH)));
  t.same(byStatus(refused), { 429: 30 }, 'every retry is refused');
  const last = Number(refused.at(-1)!.headers['retry-after']);
  t.ok(last <= first, `Retry-After ${first} s after the first refusal, ${last} s after 30 more (each refusal charged: ${first + Math.ceil((30 * 60) / TPM)})`);
});

t.test('tokens_per_minute on a deployment: one bucket for every caller of that deployment', async (t) => {
  // Anonymous requests and a key without limits of its own, alternately.
  let i = 0;
  const callers = [{}, withKey(KEYS.free)];
  const replies = await untilLimited(() => generation('td-1', callers[i++ % 2]));
  t.equal(costOf(replies[0]!), 15, 'each answer reports 10 + 5 tokens');
  t.equal(replies.length - 1, admittedFor(15), `${replies.length - 1} admitted (15 tokens each, ${TPM} per minute on td-1)`);
  t.ok(replies.slice(0, -1).every((r) => r.status === 200 && r.headers['ratelimit-limit'] === String(TPM)), 'the admitted ones carry RateLimit-Limit');
  check429(t, replies.at(-1)!, TPM, 120);
  const other = await generation('td-1', callers[i % 2]);
  t.equal(other.status, 429, 'the other caller is refused too: they share the deployment\'s bucket');
  t.equal(errorOf(other)?.code, 'SLUICE_ERR_RATE_LIMITED');
  t.equal((await generation('tk-1')).status, 200, 'another deployment is not limited by it');
  t.equal((await generation('tk-1', withKey(KEYS.free))).status, 200, 'for either caller');
});

t.test('tokens_per_minute of a key on each deployment: a bucket per deployment, for that key only', async (t) => {
  const on1 = await untilLimited(() => generation('tk-1', withKey(KEYS.perDep)));
  t.equal(costOf(on1[0]!), 15);
  t.equal(on1.length - 1, admittedFor(15), `tk-1: ${on1.length - 1} admitted (15 tokens each, ${TPM} per minute for the key)`);
  check429(t, on1.at(-1)!, TPM, 120);
  t.equal((await generation('tk-1')).status, 200, 'tk-1 itself is not limited: anonymous requests pass');
  t.equal((await generation('tk-1', withKey(KEYS.free))).status, 200, 'and so do other keys');
  const on2 = await untilLimited(() => generation('tk-2', withKey(KEYS.perDep)));
  t.equal(costOf(on2[0]!), 15);
  t.equal(on2.length - 1, admittedFor(15), `tk-2: the key has a full bucket of its own there (${on2.length - 1} admitted)`);
  check429(t, on2.at(-1)!, TPM, 120);
  t.equal((await generation('tk-1', withKey(KEYS.perDep))).status, 429, 'and on tk-1 it is still refused');
});

/**
 * Sends 10 generations at once on a fresh key's bucket (all admitted: none has ended yet),
 * then one more, and returns that last reply: its Retry-After shows how far below zero
 * the 10 answers' tokens took the bucket.
 */
async function burstThenOne(g: Gateway, deployment: string, key: string): Promise<{ burst: Reply[]; next: Reply; cost: number }> {
  const send = (): Promise<Reply> => httpRequest(`${g.url}/${deployment}/api/generate`, { method: 'POST', headers: withKey(key), body: JSON.stringify({ model: 'demo', prompt: PROMPT, stream: false }) });
  const burst = await Promise.all(Array.from({ length: 10 }, send));
  const first = JSON.parse(burst[0]!.body) as { eval_count: number; prompt_eval_count: number };
  return { burst, next: await send(), cost: first.eval_count + first.prompt_eval_count };
}

/** Seconds until one token is back after `charged` tokens were taken from a full bucket of TPM. */
const retryAfterFor = (charged: number): number => Math.ceil(((charged - TPM + 1) * 60_000) / TPM / 1000);

t.test('tokens of concurrent responses are all charged, even below zero', async (t) => {
  const [port] = (await replicaPorts(gw, 'tk-1')) as [number];
  await simConfig(port, { ttft_ms: 300 });
  try {
    const { burst, next, cost } = await burstThenOne(gw, 'tk-1', KEYS.tokF);
    t.same(byStatus(burst), { 200: 10 }, 'the 10 concurrent requests were admitted (the bucket was full)');
    t.equal(next.status, 429, 'the next one is refused');
    const expected = retryAfterFor(10 * cost);
    const ra = Number(next.headers['retry-after']);
    // A second or two of refill may have passed since.
    t.ok(ra >= expected - 3 && ra <= expected, `Retry-After ${ra} s: all ${10 * cost} tokens were charged (expected ${expected})`);
  } finally {
    await simConfig(port, { ttft_ms: 0 });
  }
});

t.test('two workers share the buckets: still exactly 10 of 30', async (t) => {
  gwW = await startGateway({
    ports: { from: 18767, to: 18768 },
    workers: 2,
    log: { level: 'info', access: true },
    deployments: [{ model: 'rw', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 10 } } }],
  });
  const g = gwW;
  const replies = await pool(30, 10, (i) => httpRequest(`${g.url}/rw-1/_sim/echo`, { headers: { 'x-request-id': `rw-${i}` } }));
  t.same(byStatus(replies), { 200: 10, 429: 20 }, 'exactly 10 admitted across both workers');
  const logs = await eventually(() => {
    const l = jsonLogs(g).filter((e) => typeof e.request_id === 'string' && e.request_id.startsWith('rw-'));
    return l.length === 30 ? l : undefined;
  }, 5_000, 'access logs of the 30 requests');
  t.same([...new Set(logs.map((e) => e.worker))].sort(), [0, 1], 'both workers answered');
});

t.test('Redis: two gateways share one limit; Redis down: fail open or closed, never hang; back: limits again', async (t) => {
  redis = await startRedis();
  const r = redis;
  const deployments = [
    { model: 'rr', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 100 } } },
    { model: 'rs', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 5 } } },
    { model: 'rp', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 1_000_000 } } },
  ];
  const api_keys = [tokenKey('redis-tok', KEYS.redisTok)];
  [gwOpen, gwClosed] = await Promise.all([
    startGateway({ ports: { from: 18769, to: 18773 }, redis: { url: r.url }, rate_limit: { on_redis_error: 'open', redis_timeout_ms: 250 }, log: { level: 'info', access: false }, deployments, api_keys }),
    startGateway({ ports: { from: 18774, to: 18779 }, redis: { url: r.url }, rate_limit: { on_redis_error: 'closed', redis_timeout_ms: 250 }, log: { level: 'info', access: false }, deployments, api_keys }),
  ]);
  const [open, closed] = [gwOpen, gwClosed];

  // 400 requests, concurrently, half through each gateway, against one limit of 100 per minute.
  const started = performance.now();
  const replies = await pool(400, 40, (i) => httpRequest(`${(i % 2 === 0 ? open : closed).url}/rr-1/_sim/echo`));
  const elapsed = performance.now() - started;
  const counts = byStatus(replies);
  const admitted = counts[200] ?? 0;
  t.equal((counts[200] ?? 0) + (counts[429] ?? 0), 400, `every answer is 200 or 429 (${JSON.stringify(counts)})`);
  // Refill is 100 per minute: one more token per 600 ms the burst lasts.
  t.ok(admitted >= 100 && admitted <= 100 + Math.ceil(elapsed / 600), `${admitted} admitted of 400 in ${Math.round(elapsed)} ms (limit 100)`);
  t.ok(replies.filter((x, i) => i % 2 === 0 && x.status === 200).length > 0 && replies.filter((x, i) => i % 2 === 1 && x.status === 200).length > 0, 'both gateways admitted some');

  // rs-1: 5 per minute, shared.
  const viaOpen: Reply[] = [];
  for (let i = 0; i < 6; i++) viaOpen.push(await httpRequest(`${open.url}/rs-1/_sim/echo`));
  t.same(viaOpen.map((x) => x.status), [200, 200, 200, 200, 200, 429], 'with Redis up: 5 admitted');
  t.same(viaOpen.slice(0, 5).map((x) => x.headers['ratelimit-remaining']), ['4', '3', '2', '1', '0'], 'admitted responses carry RateLimit-Remaining');
  t.ok(viaOpen.slice(0, 5).every((x) => x.headers['ratelimit-limit'] === '5'), 'and RateLimit-Limit');
  check429(t, viaOpen[5]!, 5);
  t.equal((await httpRequest(`${closed.url}/rs-1/_sim/echo`)).status, 429, 'the other gateway sees the same bucket');

  // Tokens in Redis: 10 concurrent generations (default simulator: 20 tokens + the prompt's
  // 5 each) are all charged, even once the bucket is below zero.
  const { burst, next, cost } = await burstThenOne(open, 'rp-1', KEYS.redisTok);
  t.same(byStatus(burst), { 200: 10 }, 'the 10 concurrent generations were admitted');
  t.equal(next.status, 429, 'then the key is out of tokens');
  const expected = retryAfterFor(10 * cost);
  const ra = Number(next.headers['retry-after']);
  t.ok(ra >= expected - 3 && ra <= expected, `Retry-After ${ra} s: all ${10 * cost} tokens were charged in Redis (expected ${expected})`);
  t.equal((await httpRequest(`${closed.url}/rp-1/api/generate`, { method: 'POST', headers: withKey(KEYS.redisTok), body: '{"model":"demo","prompt":"x","stream":false}' })).status, 429, 'through the other gateway too');

  const timed = async (url: string): Promise<Reply & { ms: number }> => {
    const s = performance.now();
    const reply = await httpRequest(url, { timeoutMs: 5_000 });
    return { ...reply, ms: performance.now() - s };
  };
  // Redis stops answering (SIGSTOP: the connections stay open, replies never come).
  process.kill(r.pid, 'SIGSTOP');
  let hung: Array<Reply & { ms: number }> = [];
  try {
    hung = await Promise.all([
      ...Array.from({ length: 5 }, () => timed(`${open.url}/rp-1/_sim/echo`)),
      ...Array.from({ length: 5 }, () => timed(`${closed.url}/rp-1/_sim/echo`)),
    ]);
  } finally {
    process.kill(r.pid, 'SIGCONT');
  }
  t.same(hung.map((x) => x.status), [200, 200, 200, 200, 200, 503, 503, 503, 503, 503], 'a hung Redis: admitted (open) or 503 (closed) after redis_timeout_ms');
  t.ok(hung.every((x) => x.ms < 1000), `none waited more than 1 s (max ${Math.round(Math.max(...hung.map((x) => x.ms)))} ms)`);
  await eventually(async () => ((await httpRequest(`${closed.url}/rp-1/_sim/echo`)).status === 200 ? true : undefined), 5_000, 'Redis to answer again');

  // Redis goes away.
  const port = r.port;
  await r.stop();
  redis = undefined;
  const storeErrorsBefore = await gwMetric(open, 'sluice_rate_limit_store_errors_total', { deployment: 'rs-1' });
  const openDown: Array<Reply & { ms: number }> = [];
  const closedDown: Array<Reply & { ms: number }> = [];
  for (let i = 0; i < 10; i++) {
    openDown.push(await timed(`${open.url}/rs-1/_sim/echo`));
    closedDown.push(await timed(`${closed.url}/rs-1/_sim/echo`));
  }
  t.same(openDown.map((x) => x.status), [...Array(5).fill(200), ...Array(5).fill(429)], 'on_redis_error: open checks the gateway\'s own bucket: 5 admitted, then 429');
  t.ok(openDown.every((x) => x.ms < 1000), `and answers each within 1 s (max ${Math.round(Math.max(...openDown.map((x) => x.ms)))} ms)`);
  t.same(closedDown.map((x) => x.status), Array(10).fill(503), 'on_redis_error: closed answers 503');
  t.ok(closedDown.every((x) => errorOf(x)?.code === 'SLUICE_ERR_RATE_LIMIT_UNAVAILABLE'), 'SLUICE_ERR_RATE_LIMIT_UNAVAILABLE');
  t.ok(closedDown.every((x) => Number(x.headers['retry-after']) >= 1), 'with Retry-After');
  t.ok(closedDown.every((x) => x.ms < 1000), `and answers each within 1 s (max ${Math.round(Math.max(...closedDown.map((x) => x.ms)))} ms)`);
  t.ok(await gwMetric(open, 'sluice_rate_limit_store_errors_total', { deployment: 'rs-1' }) - storeErrorsBefore >= 10, 'sluice_rate_limit_store_errors_total counts the requests Redis did not check');
  t.ok(await gwMetric(closed, 'sluice_rate_limit_store_errors_total', { deployment: 'rs-1' }) >= 10, 'and the refused ones on the fail-closed gateway');
  const warning = await eventually(() => jsonLogs(open).find((l) => l.level === 'warn' && /rate-limit store unavailable/.test(String(l.msg))), 5_000, 'a warning in the logs');
  t.ok(warning, 'the fail-open gateway logged a warning');

  // Redis comes back on the same port, empty: limits apply again once both reconnect.
  redis = await startRedis(port);
  await eventually(async () => ((await httpRequest(`${closed.url}/rp-1/_sim/echo`)).status === 200 ? true : undefined), 10_000, 'the fail-closed gateway to reach Redis again');
  await eventually(async () => {
    const before = await gwMetric(open, 'sluice_rate_limit_store_errors_total', { deployment: 'rp-1' });
    await httpRequest(`${open.url}/rp-1/_sim/echo`);
    return (await gwMetric(open, 'sluice_rate_limit_store_errors_total', { deployment: 'rp-1' })) === before ? true : undefined;
  }, 10_000, 'the fail-open gateway to reach Redis again');
  const back: Reply[] = [];
  for (let i = 0; i < 6; i++) back.push(await httpRequest(`${(i % 2 === 0 ? open : closed).url}/rs-1/_sim/echo`));
  t.same(back.map((x) => x.status), [200, 200, 200, 200, 200, 429], 'limits apply again: 5 admitted, shared by both gateways');
  check429(t, back[5]!, 5);
});
