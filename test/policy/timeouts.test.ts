// total_timeout_ms: the whole request, from arrival to the end of the response. Before the
// response head it is a 504 JSON error; once a stream has started, the stream ends cleanly
// with an error event (SSE) or line (NDJSON). Either way the upstream request is aborted.
// upstream.connect_timeout_ms: a TCP connect to a replica that hangs is a 504 JSON error.

import OpenAI from 'openai';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric, hangingListener, type Listener } from '../helpers/policy.js';
import { eventually, replicaPorts, simStats, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18790-18799 belong to this file (test/policy uses 18700-18799).
const TOTAL = 600;
const CONNECT = 300;
let gw: Gateway;
let hanging: Listener;

t.before(async () => {
  hanging = await hangingListener();
  gw = await startGateway({
    ports: { from: 18790, to: 18799 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'slowhead', version: '1', runtime: 'sim', args: ['--ttft-ms', '5000'], policies: { total_timeout_ms: TOTAL } },
      {
        model: 'longstream', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '100', '--tokens', '100'],
        policies: { total_timeout_ms: TOTAL, breaker: { consecutive_failures: 2 } },
      },
      // Its only replica is a listener whose connects hang (see hangingListener).
      // Health checks off: a check would take the hanging replica out of the route table.
      {
        model: 'noconn', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [hanging.url], upstream: { connect_timeout_ms: CONNECT },
        policies: { breaker: { enabled: false } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await hanging?.close();
  await reapServers([], { from: 18790, to: 18799 });
});

async function cancelledOn(id: string, n: number): Promise<void> {
  const [port] = (await replicaPorts(gw, id)) as [number];
  await eventually(async () => ((await simStats(port)).cancelled >= n ? true : undefined), 3_000, `${n} upstream requests of ${id} to be cancelled`);
}

t.test('before the response head: 504 SLUICE_ERR_TOTAL_TIMEOUT', async (t) => {
  const started = performance.now();
  const r = await httpRequest(`${gw.url}/slowhead-1/api/generate`, { method: 'POST', body: '{"model":"demo","prompt":"hi","stream":false}' });
  const ms = performance.now() - started;
  t.equal(r.status, 504);
  t.match(r.headers['content-type'], /application\/json/);
  t.equal(errorOf(r)?.code, 'SLUICE_ERR_TOTAL_TIMEOUT');
  t.equal(errorOf(r)?.request_id, r.headers['x-request-id']);
  t.ok(ms >= TOTAL - 20 && ms < TOTAL + 500, `answered after ~${TOTAL} ms (${Math.round(ms)} ms)`);
  await cancelledOn('slowhead-1', 1);
  t.pass('the upstream request was aborted');
  t.equal(await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'slowhead-1', code: 'SLUICE_ERR_TOTAL_TIMEOUT' }), 1);
});

// The OpenAI SDKs retry a 5xx twice by default: a client waited three total timeouts (and
// the model did the work three times) before it heard of the first.
t.test('the OpenAI SDK does not retry a total timeout: x-should-retry: false', async (t) => {
  const openai = new OpenAI({ baseURL: `${gw.url}/slowhead-1/v1`, apiKey: 'sk-not-checked' });
  const started = performance.now();
  const err = await openai.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }).then(() => null, (e: unknown) => e);
  const ms = performance.now() - started;
  t.ok(err instanceof OpenAI.APIError && err.status === 504, `a 504 APIError (${String(err)})`);
  t.equal((err as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry'), 'false');
  t.ok(ms < 2 * TOTAL, `heard of after one total timeout, not retried (${Math.round(ms)} ms)`);
});

t.test('after an NDJSON stream started: a final error line, and a clean end', async (t) => {
  const started = performance.now();
  const r = await httpRequest(`${gw.url}/longstream-1/api/generate`, { method: 'POST', body: '{"model":"demo","prompt":"hi"}' });
  const ms = performance.now() - started;
  t.equal(r.status, 200, 'the stream had started');
  t.ok(r.complete, 'the response ended properly (not a cut connection)');
  const lines = r.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  const tokens = lines.filter((l) => typeof l.response === 'string').length;
  t.ok(tokens >= 3 && tokens < 100, `some tokens arrived first (${tokens})`);
  t.equal(lines.at(-1)?.error?.code, 'SLUICE_ERR_TOTAL_TIMEOUT', 'the last line is the error');
  t.equal(lines.at(-1)?.error?.request_id, r.headers['x-request-id']);
  t.notOk(lines.some((l) => l.done === true), 'no done:true line: the client cannot mistake it for a whole answer');
  t.ok(ms >= TOTAL - 20 && ms < TOTAL + 500, `ended after ~${TOTAL} ms (${Math.round(ms)} ms)`);
  await cancelledOn('longstream-1', 1);
});

t.test('after an SSE stream started: a final error event, and a clean end', async (t) => {
  const r = await httpRequest(`${gw.url}/longstream-1/v1/chat/completions`, {
    method: 'POST', body: '{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}',
  });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /text\/event-stream/);
  t.ok(r.complete, 'the response ended properly');
  const events = r.body.trim().split('\n\n');
  t.ok(events.length >= 4, `some events arrived first (${events.length})`);
  const last = events.at(-1)!;
  t.match(last, /^event: error\ndata: /, 'the last event is an error event');
  t.equal(JSON.parse(last.split('\ndata: ')[1]!).error.code, 'SLUICE_ERR_TOTAL_TIMEOUT');
  t.notOk(r.body.includes('[DONE]'), 'no [DONE]');
  await cancelledOn('longstream-1', 2);
});

t.test('streams cut by the total timeout do not eject a healthy replica', async (t) => {
  // consecutive_failures is 2 here and two streams were cut above; a third one still goes
  // to the replica: the replica answered promptly, the client's time budget ran out.
  const r = await httpRequest(`${gw.url}/longstream-1/api/generate`, { method: 'POST', body: '{"model":"demo","prompt":"hi"}' });
  t.equal(r.status, 200, 'still served');
  t.equal(await gwMetric(gw, 'sluice_breaker_state', { deployment: 'longstream-1' }), 0, 'breaker closed');
  t.equal(await gwMetric(gw, 'sluice_breaker_opens_total', { deployment: 'longstream-1' }), 0, 'and never opened');
});

t.test('a connect that hangs: 504 SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT after connect_timeout_ms', async (t) => {
  const code = 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT';
  const before = await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'noconn-1', code }, { absent: 0 });
  const timed = async (path: string, body?: string): Promise<{ r: Reply; ms: number }> => {
    const started = performance.now();
    const r = await httpRequest(`${gw.url}/noconn-1${path}`, { method: body === undefined ? 'GET' : 'POST', body, headers: { 'content-type': 'application/json' }, timeoutMs: 10_000 });
    return { r, ms: performance.now() - started };
  };
  // A generation with a body (its upload is complete while the connect is still pending) and a GET.
  const replies = await Promise.all([timed('/api/generate', '{"model":"demo","prompt":"hi","stream":false}'), timed('/api/tags')]);
  for (const { r, ms } of replies) {
    t.equal(r.status, 504);
    t.match(r.headers['content-type'], /application\/json/);
    const body = JSON.parse(r.body) as { error: Record<string, unknown> };
    t.same(Object.keys(body), ['error'], 'the body is {"error": {...}}');
    t.same(Object.keys(body.error).sort(), ['code', 'message', 'request_id'], 'with code, message and request_id');
    t.equal(body.error.code, code);
    t.ok(typeof body.error.message === 'string' && body.error.message !== '', `a message (${String(body.error.message)})`);
    t.equal(body.error.request_id, r.headers['x-request-id'], 'the request id of the response');
    t.ok(ms >= CONNECT - 20 && ms < CONNECT + 500, `answered after ~${CONNECT} ms (${Math.round(ms)} ms)`);
  }
  t.equal(await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'noconn-1', code }) - before, 2, 'both counted as connect timeouts');
});

t.test('a connect that hangs under an upload too large to buffer: still 504 after connect_timeout_ms', async (t) => {
  // 4 MiB cannot sit in the connecting socket's buffer: the client is paused mid-upload,
  // and the connect timeout must still end the wait.
  const started = performance.now();
  const r = await httpRequest(`${gw.url}/noconn-1/invocations`, { method: 'POST', body: Buffer.alloc(4 * 1024 * 1024, 0x61), headers: { 'content-type': 'application/json' }, timeoutMs: 10_000 });
  const ms = performance.now() - started;
  t.equal(r.status, 504);
  t.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT');
  t.ok(ms >= CONNECT - 20 && ms < CONNECT + 1_000, `answered after ~${CONNECT} ms (${Math.round(ms)} ms)`);
});
