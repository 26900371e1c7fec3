// The response cache shared through a real Redis by two gateway instances: a response
// cached by one is a hit on the other without an upstream call (streams replayed chunk by
// chunk), entries expire in Redis after ttl_ms, identical requests during a lookup share
// it and then one upstream call, and a hung or absent Redis only makes misses, quickly.

import t from 'tap';
import { Redis } from 'ioredis';
import { cacheKey, cacheWant, decodeEntry, encodeEntry, SHARED_CACHE_PREFIX } from '../../src/policy/index.js';
import { reapServers, redisCommand, startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { gwMetric } from '../helpers/policy.js';
import { eventually, jsonLogs, replicaPorts, simStats, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18960-18979 belong to this file: gateway A takes 18960-18969, B 18970-18979.
const RANGE = { from: 18960, to: 18979 };
const TTL_MS = 1_500;
const REDIS_TIMEOUT_MS = 250;
const DEPLOYMENTS = [
  { model: 'ml', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'] },
  { model: 'mt', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'], policies: { cache: { ttl_ms: TTL_MS } } },
  { model: 'mo', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'], policies: { cache: { shared: false } } },
  { model: 'ol', version: '1', runtime: 'sim', args: ['--ttft-ms', '10', '--token-ms', '30', '--tokens', '10'] },
];

let redis: RedisServer | undefined;
let a: Gateway;
let b: Gateway;
/** Simulator ports by deployment id, for gateway A and gateway B. */
const simsA: Record<string, number> = {};
const simsB: Record<string, number> = {};

t.before(async () => {
  redis = await startRedis();
  const config = (from: number, to: number): Record<string, unknown> => ({
    ports: { from, to }, redis: { url: redis!.url }, cache: { redis_timeout_ms: REDIS_TIMEOUT_MS },
    log: { level: 'info', access: false }, deployments: DEPLOYMENTS,
  });
  [a, b] = await Promise.all([startGateway(config(18960, 18969)), startGateway(config(18970, 18979))]);
  for (const d of DEPLOYMENTS) {
    const id = `${d.model}-${d.version}`;
    [[simsA[id]], [simsB[id]]] = (await Promise.all([replicaPorts(a, id), replicaPorts(b, id)])) as [[number], [number]];
  }
});

t.teardown(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
  await reapServers([], RANGE);
});

const JSON_CT = { 'content-type': 'application/json' };

function invoke(gw: Gateway, deployment: string, body: string): Promise<Reply> {
  return httpRequest(`${gw.url}/${deployment}/invocations`, { method: 'POST', body, headers: JSON_CT, timeoutMs: 5_000 });
}

function generate(gw: Gateway, body: Record<string, unknown>): Promise<Reply> {
  return httpRequest(`${gw.url}/ol-1/api/generate`, { method: 'POST', body: JSON.stringify(body), headers: JSON_CT, timeoutMs: 5_000 });
}

/** Protocol requests the simulator on `port` has seen while `fn` ran. */
async function upstreamCalls<T>(port: number, fn: () => Promise<T>): Promise<[T, number]> {
  const before = (await simStats(port)).requests;
  const out = await fn();
  return [out, (await simStats(port)).requests - before];
}

/**
 * The Redis key the gateways use for a POST of `body` to `path` on `deployment`, as a KEYS
 * pattern: the digest of the deployment's spec between the two is the gateways' own.
 */
function sharedKey(deployment: string, path: string, body: string): string {
  const policy = { enabled: true, shared: true, ttl_ms: 1, max_bytes: 1e9, max_entry_bytes: 1e9, max_request_bytes: 1e6, vary: [], shared_across_callers: false };
  const want = cacheWant('POST', path, '', '', Buffer.byteLength(body), policy)!;
  return `${SHARED_CACHE_PREFIX}${deployment}:*:${cacheKey(want, 'POST', path, Buffer.from(body))!}`;
}

/** The key in Redis that `pattern` (sharedKey) names; undefined: none. */
const keyIn = async (pattern: string): Promise<string | undefined> => ((await redisCommand(redis!.port, 'KEYS', pattern)) as string[])[0];
const exists = async (pattern: string): Promise<boolean> => (await keyIn(pattern)) !== undefined;

/** Stores are not awaited by the response: wait until the entry has landed in Redis; its key. */
const storedInRedis = (pattern: string): Promise<string> => eventually(() => keyIn(pattern), 5_000, `${pattern} in Redis`);

/** GET commands Redis has executed so far. */
async function redisGets(): Promise<number> {
  const info = String(await redisCommand(redis!.port, 'INFO', 'commandstats'));
  return Number(/^cmdstat_get:calls=(\d+)/m.exec(info)?.[1] ?? 0);
}

const lines = (r: Reply): string[] => r.body.split('\n').filter((l) => l !== '');

t.test('the entry encoding keeps status, headers, length, chunk boundaries and the store time', async (t) => {
  const headers = ['Content-Type', 'application/x-ndjson', 'X-Note', 'caf\xe9'];
  const chunks = [Buffer.from('{"a":1}\n'), Buffer.from(''), Buffer.from([0, 255, 10])];
  const encoded = encodeEntry(200, headers, -1, chunks, 11, 1_700_000_000_123);
  const e = decodeEntry(encoded);
  t.equal(e.status, 200);
  t.same(e.headers, headers, 'latin1 header values survive');
  t.equal(e.contentLength, -1, 'a stream');
  t.same(e.chunks.map((c) => [...c]), chunks.map((c) => [...c]), 'the chunks, each as it was');
  t.equal(e.bodyBytes, 11);
  t.equal(e.storedAt, 1_700_000_000_123);
  t.equal(decodeEntry(encodeEntry(404, [], 3, [Buffer.from('abc')], 3, 5)).contentLength, 3, 'a length-framed body');

  // A reply that is a view of a larger read: the entry keeps a copy of its own bytes only.
  const big = Buffer.alloc(encoded.length + 1000);
  encoded.copy(big, 500);
  const viewed = decodeEntry(big.subarray(500, 500 + encoded.length));
  t.same(viewed.chunks.map(String), chunks.map(String));
  t.ok(viewed.chunks.every((c) => c.buffer.byteLength === encoded.length), 'chunks do not hold the larger read');

  for (const [bad, what] of [[encoded.subarray(0, encoded.length - 1), 'cut short'], [Buffer.concat([encoded, Buffer.from('x')]), 'trailing bytes'], [Buffer.from([9, 0, 200]), 'another format']] as const) {
    t.throws(() => decodeEntry(bad), { code: 'SLUICE_ERR_CACHE_ENTRY' }, what);
  }
});

t.test('MLflow: a response cached by gateway A is a hit on gateway B, with no upstream call on B', async (t) => {
  const body = '{"inputs": {"a": [1, 2], "b": [10, 20]}}';
  const key = sharedKey('ml-1', '/invocations', body);
  const [first, callsA] = await upstreamCalls(simsA['ml-1']!, () => invoke(a, 'ml-1', body));
  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(callsA, 1);
  const stored = await storedInRedis(key);
  const pttl = Number(await redisCommand(redis!.port, 'PTTL', stored));
  t.ok(pttl > 0 && pttl <= 300_000, `stored with the deployment's ttl_ms (PTTL ${pttl})`);

  const getsBefore = await redisGets();
  const [second, callsB] = await upstreamCalls(simsB['ml-1']!, () => invoke(b, 'ml-1', body));
  t.equal(second.status, 200);
  t.equal(second.headers['x-sluice-cache'], 'hit', 'a hit on the other gateway');
  t.equal(callsB, 0, "B's simulator was not called");
  t.equal(second.body, first.body, 'identical body');
  t.equal(second.headers['content-type'], first.headers['content-type']);
  t.equal(second.headers['content-length'], first.headers['content-length'], 'replayed length-framed');
  t.not(second.headers['x-request-id'], first.headers['x-request-id']);
  t.equal(await gwMetric(b, 'sluice_cache_hits_total', { deployment: 'ml-1', tier: 'redis' }), 1, 'counted as a Redis hit');

  const [third, callsB2] = await upstreamCalls(simsB['ml-1']!, () => invoke(b, 'ml-1', '{ "inputs": {"b": [10,20], "a": [1,2]} }'));
  t.equal(third.headers['x-sluice-cache'], 'hit', 'the same document in another spelling');
  t.equal(third.body, first.body);
  t.equal(callsB2, 0);
  t.equal(await redisGets() - getsBefore, 1, 'the second hit on B came from its memory: one GET in all');
  t.equal(await gwMetric(b, 'sluice_cache_hits_total', { deployment: 'ml-1', tier: 'memory' }), 1);
});

t.test('Ollama NDJSON stream: stored as its chunks, replayed by gateway B chunk by chunk', async (t) => {
  const req = { model: 'demo', prompt: 'share this stream', options: { temperature: 0 } };
  const key = sharedKey('ol-1', '/api/generate', JSON.stringify(req));
  const [first, callsA] = await upstreamCalls(simsA['ol-1']!, () => generate(a, req));
  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(callsA, 1);
  t.equal(lines(first).length, 11, '10 tokens and the final line');
  const stored = await storedInRedis(key);

  const client = new Redis(redis!.url);
  let raw: Buffer | null;
  try {
    raw = await client.getBuffer(stored);
  } finally {
    client.disconnect();
  }
  const entry = decodeEntry(raw!);
  t.equal(entry.status, 200);
  t.equal(entry.contentLength, -1, 'stored as a stream');
  t.same(entry.chunks.map(String), lines(first).map((l) => `${l}\n`), 'one stored chunk per NDJSON line, as the upstream sent them');

  const [second, callsB] = await upstreamCalls(simsB['ol-1']!, () => generate(b, req));
  t.equal(second.headers['x-sluice-cache'], 'hit');
  t.equal(callsB, 0, "B's simulator was not called");
  t.match(second.headers['content-type'], /ndjson/);
  t.equal(second.headers['transfer-encoding'], 'chunked', 'replayed with chunked framing');
  t.ok(second.complete);
  t.same(lines(second), lines(first), 'the same lines');
  t.ok(second.chunks.length > 1, `separate chunks (${second.chunks.length})`);
  t.ok(second.chunks.every((c) => c.text.endsWith('\n')), 'each chunk is whole NDJSON lines');
});

t.test('ttl_ms: the entry is gone from Redis too, and the next request is a miss', async (t) => {
  const body = '{"inputs": {"a": [7], "b": [8]}}';
  const key = sharedKey('mt-1', '/invocations', body);
  t.equal((await invoke(a, 'mt-1', body)).headers['x-sluice-cache'], 'miss');
  const pttl = Number(await redisCommand(redis!.port, 'PTTL', await storedInRedis(key)));
  t.ok(pttl > 0 && pttl <= TTL_MS, `PTTL ${pttl} <= ttl_ms ${TTL_MS}`);
  const [hit, calls] = await upstreamCalls(simsB['mt-1']!, () => invoke(b, 'mt-1', body));
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  t.equal(calls, 0);

  await sleep(TTL_MS + 200);
  t.notOk(await exists(key), 'Redis dropped the entry');
  const [late, lateCalls] = await upstreamCalls(simsB['mt-1']!, () => invoke(b, 'mt-1', body));
  t.equal(late.headers['x-sluice-cache'], 'miss', 'expired on B, in memory and in Redis');
  t.equal(lateCalls, 1);
  await storedInRedis(key);
  t.pass('stored again');
});

t.test('cache.shared: false keeps a deployment in memory only', async (t) => {
  const body = '{"inputs": {"a": [3], "b": [4]}}';
  const [[first, again], callsA] = await upstreamCalls(simsA['mo-1']!, async () => [await invoke(a, 'mo-1', body), await invoke(a, 'mo-1', body)]);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(again.headers['x-sluice-cache'], 'hit', 'a memory hit on A');
  t.equal(callsA, 1);
  const [other, callsB] = await upstreamCalls(simsB['mo-1']!, () => invoke(b, 'mo-1', body));
  t.equal(other.headers['x-sluice-cache'], 'miss', 'a miss on B');
  t.equal(callsB, 1);
  t.same(await redisCommand(redis!.port, 'KEYS', `${SHARED_CACHE_PREFIX}mo-1:*`), [], 'nothing in Redis');
});

t.test('identical requests during a slow lookup share it, then one upstream call', async (t) => {
  const body = '{"inputs": {"a": [11], "b": [12]}}';
  const getsBefore = await redisGets();
  const coalescedBefore = await gwMetric(a, 'sluice_coalesced_total', { deployment: 'ml-1' });
  const missesBefore = await gwMetric(a, 'sluice_cache_misses_total', { deployment: 'ml-1' });
  const r = redis!;
  // Redis holds the lookup (SIGSTOP: the connection stays open, the reply waits) while the
  // five requests arrive; it answers (a miss) before the gateway's timeout.
  const [replies, calls] = await upstreamCalls(simsA['ml-1']!, async () => {
    process.kill(r.pid, 'SIGSTOP');
    try {
      const pending = Promise.all(Array.from({ length: 5 }, () => invoke(a, 'ml-1', body)));
      await sleep(REDIS_TIMEOUT_MS / 2);
      process.kill(r.pid, 'SIGCONT');
      return await pending;
    } finally {
      process.kill(r.pid, 'SIGCONT');
    }
  });
  t.equal(calls, 1, 'exactly one upstream call');
  t.same(replies.map((x) => x.status), [200, 200, 200, 200, 200]);
  t.same(replies.map((x) => x.headers['x-sluice-cache']).sort(), ['coalesced', 'coalesced', 'coalesced', 'coalesced', 'miss'], 'one led, four shared its answer');
  t.ok(replies.every((x) => x.body === replies[0]!.body), 'the same answer for all');
  t.equal(await redisGets() - getsBefore, 1, 'one Redis lookup for the five');
  t.equal(await gwMetric(a, 'sluice_coalesced_total', { deployment: 'ml-1' }) - coalescedBefore, 4);
  t.equal(await gwMetric(a, 'sluice_cache_misses_total', { deployment: 'ml-1' }) - missesBefore, 5);
  await storedInRedis(sharedKey('ml-1', '/invocations', body));
});

t.test('Redis hung or gone: answered from upstream or memory within 1 s, counted; back: shared again', async (t) => {
  const timed = async (send: () => Promise<Reply>): Promise<Reply & { ms: number }> => {
    const s = performance.now();
    const reply = await send();
    return { ...reply, ms: performance.now() - s };
  };
  const cached = '{"inputs": {"a": [1, 2], "b": [10, 20]}}'; // in A's memory since the first test
  const errorsBefore = await gwMetric(a, 'sluice_cache_store_errors_total', { deployment: 'ml-1' });
  const r = redis!;
  process.kill(r.pid, 'SIGSTOP');
  let hung: Array<Reply & { ms: number }> = [];
  try {
    hung = await Promise.all([
      timed(() => invoke(a, 'ml-1', cached)),
      timed(() => invoke(a, 'ml-1', '{"inputs": {"a": [21], "b": [22]}}')),
      timed(() => invoke(b, 'ml-1', '{"inputs": {"a": [23], "b": [24]}}')),
      timed(() => generate(b, { model: 'demo', prompt: 'while redis sleeps', options: { temperature: 0 } })),
    ]);
  } finally {
    process.kill(r.pid, 'SIGCONT');
  }
  t.same(hung.map((x) => x.status), [200, 200, 200, 200]);
  t.same(hung.map((x) => x.headers['x-sluice-cache']), ['hit', 'miss', 'miss', 'miss'], 'A memory hit; misses answered by the upstream');
  t.equal(lines(hung[3]!).length, 11, 'the stream whole');
  t.ok(hung.every((x) => x.ms < 1000), `none waited more than 1 s (max ${Math.round(Math.max(...hung.map((x) => x.ms)))} ms)`);
  t.ok(await gwMetric(a, 'sluice_cache_store_errors_total', { deployment: 'ml-1' }) > errorsBefore, 'sluice_cache_store_errors_total counts the failed lookup');
  t.ok(await gwMetric(b, 'sluice_cache_store_errors_total', { deployment: 'ol-1' }) >= 1, 'on B too');
  const warning = await eventually(() => jsonLogs(a).find((l) => l.level === 'warn' && /shared cache store unavailable/.test(String(l.msg))), 5_000, 'a warning in the logs');
  t.ok(warning, 'logged a warning');

  // Resumed: the same connections answer again, and B finds what A stores.
  const resumed = '{"inputs": {"a": [25], "b": [26]}}';
  t.equal((await invoke(a, 'ml-1', resumed)).headers['x-sluice-cache'], 'miss');
  await storedInRedis(sharedKey('ml-1', '/invocations', resumed));
  const [afterResume, resumeCalls] = await upstreamCalls(simsB['ml-1']!, () => invoke(b, 'ml-1', resumed));
  t.equal(afterResume.headers['x-sluice-cache'], 'hit', 'shared again once Redis resumed');
  t.equal(resumeCalls, 0);

  // Gone altogether (connections refused): misses at once, then sharing again when it is back.
  const port = r.port;
  await r.stop();
  redis = undefined;
  const down = await timed(() => invoke(a, 'ml-1', '{"inputs": {"a": [31], "b": [32]}}'));
  t.equal(down.status, 200);
  t.equal(down.headers['x-sluice-cache'], 'miss');
  t.ok(down.ms < 1000, `answered in ${Math.round(down.ms)} ms`);
  redis = await startRedis(port);

  // Both gateways reconnect in the background. Each try is a new document: a miss on A,
  // in Redis once A has reconnected, then a hit on B once B has too.
  let n = 0;
  const [hit, calls] = await eventually(async () => {
    const body = `{"inputs": {"a": [41], "b": [${n++}]}}`;
    await invoke(a, 'ml-1', body);
    await sleep(50);
    if (!(await exists(sharedKey('ml-1', '/invocations', body)))) return undefined;
    const tried = await upstreamCalls(simsB['ml-1']!, () => invoke(b, 'ml-1', body));
    return tried[0].headers['x-sluice-cache'] === 'hit' ? tried : undefined;
  }, 10_000, 'both gateways to share through the restarted Redis');
  t.equal(hit.status, 200, 'B finds what A stored in the restarted Redis');
  t.equal(calls, 0);
});
