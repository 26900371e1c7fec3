// Response cache and request coalescing: exact-match keys over a normalised body, hits
// replayed in the framing they were received in (streams chunk by chunk), LLM requests
// cached only when deterministic or asked for, identical requests in flight sharing one
// upstream call, and the per-deployment counters in /metrics.

import t from 'tap';
import type { CacheConfig } from '../../src/config/index.js';
import { cacheKey, cacheWant, ResponseCache } from '../../src/policy/index.js';
import { httpRequest, type Reply, type RequestOptions } from '../helpers/http.js';
import { gwMetric } from '../helpers/policy.js';
import { seededRandom } from '../helpers/random.js';
import { replicaPorts, simStats, sleep, startGateway, startSim, eventually, type Gateway, type Sim } from '../helpers/procs.js';

// This file's gateway allocates its simulators' ports from 18800-18819.
const TTL_MS = 1_500;
let gw: Gateway;
let mlPort: number;
let olPort: number;
let offPort: number;
let crashy: Sim;

t.before(async () => {
  crashy = await startSim(['--ttft-ms', '10', '--token-ms', '30', '--tokens', '10', '--crash-after', '3']);
  gw = await startGateway({
    ports: { from: 18800, to: 18819 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'ml', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'], policies: { cache: { ttl_ms: TTL_MS, max_request_bytes: 1024 } } },
      { model: 'ol', version: '1', runtime: 'sim', args: ['--ttft-ms', '10', '--token-ms', '30', '--tokens', '10'] },
      // Health checks off: the crashing upstream must stay routed.
      { model: 'cr', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [crashy.url], policies: { retry: { attempts: 0 } } },
      { model: 'off', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'], policies: { cache: { enabled: false } } },
      { model: 'rc', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'], policies: { rate_limit: { requests_per_minute: 1 } } },
    ],
  });
  [[mlPort], [olPort], [offPort]] = await Promise.all([replicaPorts(gw, 'ml-1'), replicaPorts(gw, 'ol-1'), replicaPorts(gw, 'off-1')]) as [[number], [number], [number]];
});

t.teardown(async () => {
  await gw?.stop();
  await crashy?.stop();
});

const JSON_CT = { 'content-type': 'application/json' };

function invoke(deployment: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  return httpRequest(`${gw.url}/${deployment}/invocations`, { method: 'POST', body, headers: { ...JSON_CT, ...headers } });
}

function generate(body: Record<string, unknown>, opts: RequestOptions = {}): Promise<Reply> {
  return httpRequest(`${gw.url}/ol-1/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', ...body }), ...opts, headers: { ...JSON_CT, ...(opts.headers ?? {}) } });
}

/** Protocol requests the simulator on `port` has seen while `fn` ran. */
async function upstreamCalls<T>(port: number, fn: () => Promise<T>): Promise<[T, number]> {
  const before = (await simStats(port)).requests;
  const out = await fn();
  return [out, (await simStats(port)).requests - before];
}

const lines = (r: Reply): string[] => r.body.split('\n').filter((l) => l !== '');

/** Every x-sluice-cache value as received: a response carries exactly one. */
const cacheHeaders = (r: Reply): string[] => r.rawHeaders.filter((_, i) => i % 2 === 1 && r.rawHeaders[i - 1]!.toLowerCase() === 'x-sluice-cache');

t.test('MLflow /invocations: the same body twice is one upstream call', async (t) => {
  const body = '{"inputs": {"a": [1, 2], "b": [10, 20]}}';
  const [[first, second], calls] = await upstreamCalls(mlPort, async () => [await invoke('ml-1', body), await invoke('ml-1', body)]);
  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(second.status, 200);
  t.equal(second.headers['x-sluice-cache'], 'hit');
  t.equal(second.body, first.body, 'identical body');
  t.equal(second.headers['content-type'], first.headers['content-type']);
  t.equal(second.headers['content-length'], first.headers['content-length'], 'a length-framed response is replayed length-framed');
  t.ok(second.headers['x-request-id'] !== first.headers['x-request-id'], 'each response has its own request id');
  t.equal(calls, 1, 'the simulator saw one request');

  const [reordered, calls2] = await upstreamCalls(mlPort, () => invoke('ml-1', '{ "inputs" : {\n  "b": [10,20],  "a": [1,2]\n} }'));
  t.equal(reordered.headers['x-sluice-cache'], 'hit', 'key order and whitespace do not matter');
  t.equal(reordered.body, first.body);
  t.equal(calls2, 0);

  const [other, calls3] = await upstreamCalls(mlPort, () => invoke('ml-1', '{"inputs": {"a": [1, 2], "b": [10, 21]}}'));
  t.equal(other.headers['x-sluice-cache'], 'miss', 'a different body is a different key');
  t.not(other.body, first.body);
  t.equal(calls3, 1);

  const [noStore, calls4] = await upstreamCalls(mlPort, () => invoke('ml-1', body, { 'cache-control': 'no-store' }));
  t.equal(noStore.headers['x-sluice-cache'], 'bypass', 'Cache-Control: no-store bypasses');
  t.equal(noStore.body, first.body);
  t.equal(calls4, 1);

  const [query, calls5] = await upstreamCalls(mlPort, () => httpRequest(`${gw.url}/ml-1/invocations?x=1`, { method: 'POST', body, headers: JSON_CT }));
  t.equal(query.headers['x-sluice-cache'], 'miss', 'the query string is part of the key');
  t.equal(calls5, 1);
});

t.test('MLflow: entries expire after ttl_ms', async (t) => {
  const body = '{"inputs": {"a": [5], "b": [6]}}';
  t.equal((await invoke('ml-1', body)).headers['x-sluice-cache'], 'miss');
  t.equal((await invoke('ml-1', body)).headers['x-sluice-cache'], 'hit');
  await sleep(TTL_MS + 200);
  const [late, calls] = await upstreamCalls(mlPort, () => invoke('ml-1', body));
  t.equal(late.headers['x-sluice-cache'], 'miss', 'expired');
  t.equal(calls, 1);
  t.equal((await invoke('ml-1', body)).headers['x-sluice-cache'], 'hit', 'stored again');
});

t.test('bodies over max_request_bytes, other paths and errors bypass', async (t) => {
  const big = JSON.stringify({ inputs: { a: Array.from({ length: 400 }, (_, i) => i), b: Array.from({ length: 400 }, (_, i) => i) } });
  t.ok(big.length > 1024);
  const [[a, b], calls] = await upstreamCalls(mlPort, async () => [await invoke('ml-1', big), await invoke('ml-1', big)]);
  t.equal(a.status, 200);
  t.equal(a.headers['x-sluice-cache'], 'bypass', 'too big to buffer for a key');
  t.equal(b.headers['x-sluice-cache'], 'bypass');
  t.equal(b.body, a.body);
  t.equal(calls, 2);

  const ping = await httpRequest(`${gw.url}/ml-1/ping`);
  t.equal(ping.headers['x-sluice-cache'], 'bypass', 'a GET without a cache header is not a candidate');

  const [[bad1, bad2], calls2] = await upstreamCalls(mlPort, async () => [await invoke('ml-1', '{"inputs": 1, "instances": 2}'), await invoke('ml-1', '{"inputs": 1, "instances": 2}')]);
  t.equal(bad1.status, 400);
  t.equal(bad2.status, 400);
  t.equal(bad2.headers['x-sluice-cache'], 'miss', 'only 200 responses are stored');
  t.equal(calls2, 2);
});

t.test('a deployment with the cache off: bypass, every request goes upstream', async (t) => {
  const body = '{"inputs": {"a": [1], "b": [2]}}';
  const [[a, b], calls] = await upstreamCalls(offPort, async () => [await invoke('off-1', body), await invoke('off-1', body)]);
  t.equal(a.status, 200);
  t.same(cacheHeaders(a), ['bypass'], 'one x-sluice-cache header: bypass');
  t.same(cacheHeaders(b), ['bypass']);
  t.equal(calls, 2);
});

t.test('a cache candidate refused at admission (429) is a bypass, once', async (t) => {
  const body = '{"inputs": {"a": [3], "b": [4]}}';
  const first = await invoke('rc-1', body);
  t.equal(first.status, 200);
  t.same(cacheHeaders(first), ['miss']);
  const limited = await invoke('rc-1', body);
  t.equal(limited.status, 429, 'requests_per_minute: 1');
  t.same(cacheHeaders(limited), ['bypass'], 'refused before any cache decision: one x-sluice-cache header, bypass');
});

t.test('Ollama stream at temperature 0: a hit replays the NDJSON stream chunk by chunk', async (t) => {
  const req = { prompt: 'replay me', options: { temperature: 0 } };
  const [[first, second], calls] = await upstreamCalls(olPort, async () => [await generate(req), await generate(req)]);
  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(second.headers['x-sluice-cache'], 'hit');
  t.equal(calls, 1, 'the simulator saw one request');
  t.equal(second.headers['content-type'], first.headers['content-type']);
  t.match(second.headers['content-type'], /ndjson/);
  t.equal(second.headers['transfer-encoding'], 'chunked', 'replayed with chunked framing');
  t.ok(second.complete);
  t.same(lines(second), lines(first), 'the same lines');
  t.equal(lines(second).length, 11, '10 tokens and the final line');
  t.ok(second.chunks.length > 1, `separate chunks (${second.chunks.length})`);
  t.ok(second.chunks.every((c) => c.text.endsWith('\n')), 'each chunk is whole NDJSON lines');
  t.equal(JSON.parse(lines(second).at(-1)!).done, true);

  const seeded = { prompt: 'seeded', seed: 42 };
  await generate(seeded);
  t.equal((await generate(seeded)).headers['x-sluice-cache'], 'hit', 'a seed makes it deterministic too');
});

t.test('non-deterministic LLM requests bypass unless the client asks', async (t) => {
  const req = { prompt: 'be creative', stream: false };
  const [[a, b], calls] = await upstreamCalls(olPort, async () => [await generate(req), await generate(req)]);
  t.equal(a.headers['x-sluice-cache'], 'bypass');
  t.equal(b.headers['x-sluice-cache'], 'bypass');
  t.equal(calls, 2);

  const on = { headers: { 'x-sluice-cache': 'on' } };
  const [[c, d], calls2] = await upstreamCalls(olPort, async () => [await generate(req, on), await generate(req, on)]);
  t.equal(c.headers['x-sluice-cache'], 'miss');
  t.equal(d.headers['x-sluice-cache'], 'hit', 'x-sluice-cache: on');
  t.equal(d.body, c.body);
  t.equal(calls2, 1);

  const maxAge = { headers: { 'cache-control': 'max-age=60' } };
  const other = { prompt: 'be creative again', stream: false };
  t.equal((await generate(other, maxAge)).headers['x-sluice-cache'], 'miss');
  t.equal((await generate(other, maxAge)).headers['x-sluice-cache'], 'hit', 'Cache-Control: max-age=N');
  t.equal((await generate({ ...req, options: { temperature: 0 } }, { headers: { 'cache-control': 'no-store' } })).headers['x-sluice-cache'], 'bypass', 'no-store wins');
});

t.test('coalescing: 5 identical concurrent streams share one upstream call', async (t) => {
  const before = await gwMetric(gw, 'sluice_coalesced_total', { deployment: 'ol-1' });
  const req = { prompt: 'together', options: { temperature: 0 } };
  const [replies, calls] = await upstreamCalls(olPort, () => Promise.all(Array.from({ length: 5 }, () => generate(req))));
  t.equal(calls, 1, 'the simulator saw one request');
  for (const r of replies) {
    t.equal(r.status, 200);
    t.ok(r.complete);
    t.equal(r.body, replies[0]!.body, 'the full identical stream');
  }
  t.equal(lines(replies[0]!).length, 11);
  t.same(replies.map((r) => r.headers['x-sluice-cache']).sort(), ['coalesced', 'coalesced', 'coalesced', 'coalesced', 'miss'], 'none came from the cache: one led, four shared its answer');
  t.equal(await gwMetric(gw, 'sluice_coalesced_total', { deployment: 'ol-1' }) - before, 4);
  t.equal((await generate(req)).headers['x-sluice-cache'], 'hit', 'and the stream was stored');
});

t.test('coalescing: a late joiner gets the chunks so far, then the live ones', async (t) => {
  const req = { prompt: 'late joiner', options: { temperature: 0 } };
  let late: Promise<Reply> | null = null;
  const [[first, second], calls] = await upstreamCalls(olPort, async () => {
    const first = await generate(req, { onBody: (body) => { if (late === null && body.split('\n').length > 3) late = generate(req); } });
    return [first, await late!];
  });
  t.equal(calls, 1);
  t.equal(second.headers['x-sluice-cache'], 'coalesced');
  t.ok(second.complete);
  t.equal(second.body, first.body, 'the complete stream');
  t.equal(lines(second).length, 11);
  t.ok(second.chunks.length > 3, 'live chunks arrived one by one after the backlog');
});

t.test('coalescing: the leader leaving does not disturb the joiners; the last one leaving aborts', async (t) => {
  const req = { prompt: 'leader leaves', options: { temperature: 0 } };
  const cancelledBefore = (await simStats(olPort)).cancelled;
  const [[leader, joiner], calls] = await upstreamCalls(olPort, async () => {
    const leader = generate(req, { abortWhen: (b) => b.split('\n').length > 2 });
    await sleep(5);
    const joiner = generate(req);
    return [await leader, await joiner];
  });
  t.ok(leader.abortedAt !== null, 'the leader went away mid-stream');
  t.equal(calls, 1);
  t.ok(joiner.complete);
  t.equal(lines(joiner).length, 11, 'the joiner got the whole stream');
  t.equal((await simStats(olPort)).cancelled, cancelledBefore, 'the upstream was not cancelled');
  t.equal((await generate(req)).headers['x-sluice-cache'], 'hit', 'and it was stored');

  const gone = { prompt: 'everyone leaves', options: { temperature: 0 } };
  const abort = { abortWhen: (b: string) => b.split('\n').length > 2 };
  const replies = await Promise.all([generate(gone, abort), generate(gone, abort), generate(gone, abort)]);
  t.ok(replies.every((r) => r.abortedAt !== null));
  await eventually(async () => ((await simStats(olPort)).cancelled > cancelledBefore ? true : undefined), 5_000, 'upstream cancelled');
  t.pass('the upstream was aborted once nobody was left');
});

t.test('coalescing: joiners get the leader\'s failure, and it is not stored', async (t) => {
  const req = { prompt: 'fails', stream: false, options: { temperature: 0 } };
  await fetch(`http://127.0.0.1:${olPort}/_sim/config`, { method: 'POST', body: JSON.stringify({ status: 503, status_delay_ms: 200 }), headers: JSON_CT });
  try {
    const [replies, calls] = await upstreamCalls(olPort, () => Promise.all(Array.from({ length: 3 }, () => generate(req))));
    t.equal(calls, 1);
    for (const r of replies) {
      t.equal(r.status, 503);
      t.equal(r.body, replies[0]!.body);
    }
  } finally {
    await fetch(`http://127.0.0.1:${olPort}/_sim/config`, { method: 'POST', body: JSON.stringify({ status: 0, status_delay_ms: 0 }), headers: JSON_CT });
  }
  const ok = await generate(req);
  t.equal(ok.status, 200);
  t.equal(ok.headers['x-sluice-cache'], 'miss');
});

t.test('coalescing: an upstream that dies mid-stream ends every joiner\'s stream the same way', async (t) => {
  const body = JSON.stringify({ model: 'demo', prompt: 'crash', options: { temperature: 0 } });
  const send = (): Promise<Reply> => httpRequest(`${gw.url}/cr-1/api/generate`, { method: 'POST', body, headers: JSON_CT });
  const replies = await Promise.all([send(), send(), send()]);
  t.equal(await gwMetric(gw, 'sluice_coalesced_total', { deployment: 'cr-1' }), 2);
  for (const r of replies) {
    t.equal(r.status, 200, 'the head had been sent');
    const last = JSON.parse(lines(r).at(-1)!) as { error?: { code: string } };
    t.equal(last.error?.code, 'SLUICE_ERR_UPSTREAM_RESET', 'an NDJSON error line ends the stream');
    t.equal(lines(r).length, 4, 'after the 3 tokens the upstream sent');
  }
  t.equal(await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'cr-1' }), 0);
});

t.test('cache counters in /metrics, per deployment', async (t) => {
  for (const name of ['sluice_cache_misses_total', 'sluice_cache_bypass_total', 'sluice_coalesced_total']) {
    t.match(await (await fetch(`${gw.adminUrl}/metrics`)).text(), new RegExp(`^${name}\\{deployment="ml-1"\\} \\d+$`, 'm'), name);
  }
  t.match(await (await fetch(`${gw.adminUrl}/metrics`)).text(), /^sluice_cache_hits_total\{deployment="ml-1",tier="memory"\} \d+$/m, 'hits by tier');
  t.equal(await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'ml-1', tier: 'redis' }), 0, 'no Redis: no hit from the shared tier');
  t.ok(await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'ml-1' }) >= 4);
  t.ok(await gwMetric(gw, 'sluice_cache_misses_total', { deployment: 'ml-1' }) >= 4);
  t.ok(await gwMetric(gw, 'sluice_cache_bypass_total', { deployment: 'ml-1' }) >= 3);
  t.ok(await gwMetric(gw, 'sluice_coalesced_total', { deployment: 'ol-1' }) >= 6);
  t.equal(await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'off-1' }), 0);
  const hits = await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'ml-1' });
  const misses = await gwMetric(gw, 'sluice_cache_misses_total', { deployment: 'ml-1' });
  t.equal(await gwMetric(gw, 'sluice_cache_hit_ratio', { deployment: 'ml-1' }), hits / (hits + misses), 'sluice_cache_hit_ratio = hits / (hits + misses)');
  await t.rejects(gwMetric(gw, 'sluice_cache_hit_ratio', { deployment: 'off-1' }), 'no ratio before a cacheable request');
});

t.test('the store: LRU by bytes, per-entry limit, TTL; keys and candidates', async (t) => {
  const policy = { enabled: true, shared: false, ttl_ms: 1_000, max_bytes: 1_000, max_entry_bytes: 400, max_request_bytes: 100, vary: [], shared_across_callers: false };
  const store = new ResponseCache(policy);
  const body = (n: number): Buffer[] => [Buffer.alloc(n)];
  t.ok(store.set('a', 200, [], 300, body(300), 300, 0));
  t.ok(store.set('b', 200, [], 300, body(300), 300, 0));
  t.notOk(store.set('big', 200, [], 500, body(500), 500, 0), 'over max_entry_bytes');
  t.ok(store.get('a', 1, -1), 'a used: b is now the least recently used');
  t.ok(store.set('c', 200, [], 300, body(300), 300, 0));
  t.ok(store.bytes <= policy.max_bytes);
  t.equal(store.get('b', 1, -1), undefined, 'b evicted');
  t.ok(store.get('a', 1, -1) !== undefined && store.get('c', 1, -1) !== undefined);
  t.equal(store.get('a', 500, 100), undefined, 'older than the client\'s max-age');
  t.equal(store.get('a', 1_000, -1), undefined, 'expired');
  store.reconfigure({ ...policy, max_bytes: 0 });
  t.equal(store.size, 0, 'a smaller max_bytes evicts at once');

  t.equal(cacheWant('POST', '/v1/embeddings', '', '', 10, policy), null, 'not a cacheable path');
  t.equal(cacheWant('POST', '/invocations', '', '', 101, policy), null, 'announced body too big');
  t.equal(cacheWant('GET', '/anything', 'max-age=5', '', -1, policy)?.maxAgeMs, 5_000);
  const llm = cacheWant('POST', '/v1/chat/completions', '', '', 10, policy)!;
  t.equal(cacheKey(llm, 'POST', '/v1/chat/completions', Buffer.from('{"temperature":0.7}')), null, 'not deterministic');
  const k1 = cacheKey(llm, 'POST', '/v1/chat/completions', Buffer.from('{"temperature":0,"messages":[{"role":"user","content":"x"}]}'));
  const k2 = cacheKey(llm, 'POST', '/v1/chat/completions', Buffer.from(' {"messages":[{"content":"x","role":"user"}], "temperature":0}'));
  t.ok(k1 !== null && k1 === k2, 'canonical JSON: key order and whitespace');
  t.not(k1, cacheKey(llm, 'POST', '/v1/completions', Buffer.from('{"temperature":0,"messages":[{"role":"user","content":"x"}]}')), 'the path is part of the key');
  // Repeated bodies are answered from a memo of recent keys: the same answers as computed.
  const warm = Buffer.from('{"temperature":0.7,"prompt":"memo"}');
  t.equal(cacheKey(llm, 'POST', '/v1/completions', warm), null, 'a non-deterministic body bypasses');
  t.equal(cacheKey(llm, 'POST', '/v1/completions', Buffer.from(warm)), null, 'and still does when repeated');
  const asked = cacheWant('POST', '/v1/completions', '', 'on', 10, policy)!;
  const askedKey = cacheKey(asked, 'POST', '/v1/completions', Buffer.from(warm));
  t.type(askedKey, 'string', 'the same bytes, asked for with x-sluice-cache: on, get a key');
  t.equal(cacheKey(asked, 'POST', '/v1/completions', Buffer.from(warm)), askedKey, 'the same key when repeated');
  t.not(cacheKey(asked, 'POST', '/v1/completions?x=1', Buffer.from(warm)), askedKey, 'the query is part of the key');
  // Sampled generations are told apart by a scan of the bytes; whatever the scan cannot
  // settle is parsed, so every body gets the answer the parse gives.
  const key = (body: string): string | null => cacheKey(llm, 'POST', '/v1/chat/completions', Buffer.from(body));
  t.equal(key('{"messages":[],"temperature" : 1.5e-1}'), null, 'a temperature above 0, spaced and in exponent form');
  t.equal(key('{"messages":[]}'), null, 'no temperature and no seed: sampled at the server default');
  t.type(key('{"messages":[],"temperature": 0.0}'), 'string', '0.0 is 0');
  t.type(key('{"messages":[],"temperature":-0}'), 'string', '-0 is 0');
  t.type(key('{"temperature":0.9,"seed":42,"messages":[]}'), 'string', 'a seed makes it deterministic');
  t.type(key('{"model":"m","prompt":"p","options":{"temperature":0}}'), 'string', "Ollama's options.temperature 0");
  t.type(key('{"temperature":0.5,"options":{"temperature":0}}'), 'string', 'every temperature is read, not only the first');
  t.type(key('{"messages":[{"role":"user","content":"say \\"temperature\\": 3"}],"temperature":0}'), 'string', 'a temperature quoted in a message does not hide the real one');
  t.equal(key('{"messages":[{"role":"user","content":"say \\"temperature\\": 0"}],"temperature":0.5}'), null, 'nor does a quoted 0 make it deterministic');
  t.equal(key('{"messages":[],"temperature":null}'), null, 'null: not deterministic (the parse says so)');
});

t.test('the sampled-request scan agrees with the parse on every generated body', async (t) => {
  // The scan skips bytes (it looks at every sixth where it can); a body it wrongly calls
  // sampled would bypass the cache although the parse says deterministic. Bodies are built
  // from pieces that put the two words at every offset, inside strings, split, escaped.
  const policy: CacheConfig = { enabled: true, shared: false, ttl_ms: 1_000, max_bytes: 1 << 20, max_entry_bytes: 1 << 16, max_request_bytes: 1 << 16, vary: [], shared_across_callers: true };
  const llm = cacheWant('POST', '/v1/chat/completions', '', '', 10, policy)!;
  const seeded = (v: unknown): boolean => typeof v === 'number' || (typeof v === 'string' && v !== '');
  const record = (v: unknown): Record<string, unknown> | null => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : null);
  /** What the cache's rule says of the parsed body (a key: deterministic). */
  const deterministic = (text: string): boolean => {
    let top: Record<string, unknown> | null;
    try {
      top = record(JSON.parse(text));
    } catch {
      return false;
    }
    if (top === null) return false;
    if (top.temperature === 0 || seeded(top.seed)) return true;
    const options = top.options;
    if (typeof options !== 'object' || options === null) return false;
    const o = options as Record<string, unknown>;
    return o.temperature === 0 || seeded(o.seed);
  };
  const { below: random, pick } = seededRandom(0x2545f491);
  const keys = ['temperature', 'seed', 'messages', 'options', 'tempe', 'see', 'temperatures', 'x', 'seeds'];
  const values = ['0', '0.0', '-0', '0.7', '1e-3', '2', 'null', '"0"', '""', '"s"', 'true', '[]',
    // Numbers of every shape the scan reads from their digits or hands to Number(), some
    // that JSON refuses (the whole body is then not deterministic).
    '1', '0.000', '-0.0', '-0.25', '0e5', '1e-400', '1e400', '00', '1.', '.5', '+1', '0.00000000000000000001', '000000000000000000000', '100000000000000000000000',
    `0.${'0'.repeat(330)}1`, `1${'0'.repeat(330)}`,
    '"the seed of a temperature"', '"say \\"temperature\\": 0"', '"\\"seed\\""', '"eeeeee\\"tempe"'];
  const space = (): string => pick(['', '', ' ', '\n ', '\t']);
  const object = (depth: number): string => {
    const fields: string[] = [];
    for (let n = random(5); n >= 0; n--) {
      const value = depth < 2 && random(4) === 0 ? object(depth + 1) : pick(values);
      fields.push(`${space()}"${pick(keys)}"${space()}:${space()}${value}`);
    }
    return `{${fields.join(',')}${space()}}`;
  };
  let keyed = 0;
  const wrong: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    // A prefix of filler moves the words to every offset of the scan's windows.
    const text = object(0).replace('{', `{"pad":"${'e'.repeat(random(8))}${'ab'.repeat(random(4))}",`);
    const expected = deterministic(text);
    const got = cacheKey(llm, 'POST', '/v1/chat/completions', Buffer.from(text)) !== null;
    if (got !== expected) wrong.push(`${text}: ${got ? 'a key' : 'bypassed'}, the parse says ${expected ? 'deterministic' : 'sampled'}`);
    if (expected) keyed++;
  }
  t.same(wrong.slice(0, 3), [], `${wrong.length} of 20000 bodies answered otherwise than the parse`);
  t.ok(keyed > 2_000 && keyed < 18_000, `both kinds generated (${keyed} deterministic)`);
});
