// Streamed generations through the gateway: each token reaches the client when the model
// produces it, the stream's content is exactly what the server generated, and a client
// that goes away stops the generation upstream at once.

import t from 'tap';
import { responseText } from '../../src/sim/fake.js';
import { httpRequest, json, metric } from '../helpers/http.js';
import { eventually, metricsText, replicaPorts, simStats, startGateway, type Gateway } from '../helpers/procs.js';

const TOKEN_MS = 50;
const TOKENS = 10;

// Replica ports 18400-18409 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;
let simPort: number;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18400, to: 18409 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '20', '--token-ms', String(TOKEN_MS), '--tokens', String(TOKENS)] }],
  });
  [simPort] = await replicaPorts(gw, 'demo-1');
});
t.teardown(() => gw?.stop());

const generate = (body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<ReturnType<typeof httpRequest> extends Promise<infer R> ? R : never> =>
  httpRequest(`${gw.url}/demo-1/api/generate`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

t.test('Ollama NDJSON arrives token by token, complete and in order', async (t) => {
  const r = await generate({ model: 'demo', prompt: 'why is the sky blue?' });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/x-ndjson/);
  t.equal(r.headers['content-length'], undefined, 'a stream has no content-length');
  t.equal(r.headers['transfer-encoding'], 'chunked');

  // Tokens are 50 ms apart upstream; a gateway that buffers would deliver one or two
  // chunks at the end. Allow some coalescing by the client's socket reads.
  t.ok(r.chunks.length >= TOKENS / 2, `arrived in ${r.chunks.length} separate chunks (>= ${TOKENS / 2})`);
  const first = r.chunks[0]!.at;
  const last = r.chunks[r.chunks.length - 1]!.at;
  // The last token is produced ~(TOKENS-1)*TOKEN_MS after the first: the first chunk must
  // have reached us long before the stream ended.
  t.ok(last - first >= (TOKENS - 1) * TOKEN_MS * 0.7, `first chunk at ${first.toFixed(0)} ms, last at ${last.toFixed(0)} ms`);

  const lines = r.body.split('\n');
  t.equal(lines.pop(), '', 'every line ends with a newline');
  const objs = lines.map((l) => JSON.parse(l) as { response: string; done: boolean; done_reason?: string; model: string });
  t.equal(objs.map((o) => o.response).join(''), responseText(TOKENS), 'concatenated responses are what the model generated');
  t.ok(objs.slice(0, -1).every((o) => o.done === false), 'only the last line is done');
  const final = objs[objs.length - 1]!;
  t.equal(final.done, true);
  t.equal(final.done_reason, 'stop');
  t.ok(typeof r.headers['x-request-id'] === 'string' && r.headers['x-request-id'].length > 0, 'a request id is assigned');
});

t.test('OpenAI SSE arrives as separate events ending with [DONE]', async (t) => {
  const r = await httpRequest(`${gw.url}/demo-1/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'hello' }] }),
  });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^text\/event-stream/);
  t.ok(r.chunks.length >= TOKENS / 2, `arrived in ${r.chunks.length} separate chunks`);
  t.ok(r.chunks[r.chunks.length - 1]!.at - r.chunks[0]!.at >= (TOKENS - 1) * TOKEN_MS * 0.7, 'spread over the generation time');
  t.ok(r.body.endsWith('\n\n'), 'the stream ends at an event boundary');
  const events = r.body.split('\n\n').filter((e) => e !== '');
  t.ok(events.every((e) => e.startsWith('data: ')), 'every event is a data event');
  t.equal(events[events.length - 1], 'data: [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as { object: string; choices: Array<{ delta: { content?: string }; finish_reason: string | null }> });
  t.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
  t.equal(text, responseText(TOKENS), 'deltas concatenate to the generated text');
  t.equal(chunks[chunks.length - 1]!.choices[0]!.finish_reason, 'stop');
});

t.test('stream:false gives one JSON object with a content-length', async (t) => {
  const r = await generate({ model: 'demo', prompt: 'hi', stream: false });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.equal(r.headers['content-length'], String(Buffer.byteLength(r.body)), 'content-length matches the body');
  t.equal(r.headers['transfer-encoding'], undefined);
  const body = json<{ response: string; done: boolean }>(r);
  t.equal(body.response, responseText(TOKENS));
  t.equal(body.done, true);
});

t.test('a client that goes away mid-stream cancels the generation upstream at once', async (t) => {
  const before = metric(await metricsText(gw), 'sluice_client_aborts_total', { deployment: 'demo-1' });
  const requestId = `abort-test-${process.pid}-${Date.now()}`;
  const r = await httpRequest(`${gw.url}/demo-1/api/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    body: JSON.stringify({ model: 'demo', prompt: 'a long story' }),
    abortWhen: (body) => body.includes('\n'),
  });
  t.equal(r.status, 200);
  t.equal(r.headers['x-request-id'], requestId, 'the client sees its own request id');
  t.not(r.abortedAt, null, 'the client aborted after the first chunk');
  const abortedAt = r.abortedAt!;

  const cancellation = await eventually(async () => (await simStats(simPort)).cancellations.find((c) => c.request_id === requestId), 5_000, 'the simulator to record the cancellation');
  const lag = cancellation.at_ms - abortedAt;
  t.ok(Math.abs(lag) <= 100, `the simulator saw the cancellation ${lag} ms after the client aborted (<= 100 ms)`);
  t.ok(cancellation.tokens_sent < TOKENS, `generation stopped early (${cancellation.tokens_sent} of ${TOKENS} tokens)`);

  const after = await eventually(async () => {
    const n = metric(await metricsText(gw), 'sluice_client_aborts_total', { deployment: 'demo-1' });
    return n > before ? n : undefined;
  }, 5_000, 'sluice_client_aborts_total to grow');
  t.equal(after, before + 1, 'sluice_client_aborts_total grew by one');
  t.equal(metric(await metricsText(gw), 'sluice_requests_total', { deployment: 'demo-1', code: '499' }) >= 1, true, 'the aborted request is counted as 499');
});

t.test('at the root (routed by the body\'s model), a client that goes away mid-stream cancels the generation too', async (t) => {
  // The front door reads the body before the exchange exists: the client's leaving must
  // still reach the exchange it became.
  const requestId = `abort-root-${process.pid}-${Date.now()}`;
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    body: JSON.stringify({ model: 'demo-1', stream: true, messages: [{ role: 'user', content: 'a long story' }] }),
    abortWhen: (body) => body.includes('data:'),
  });
  t.equal(r.status, 200);
  t.not(r.abortedAt, null, 'the client aborted after the first event');
  const cancellation = await eventually(async () => (await simStats(simPort)).cancellations.find((c) => c.request_id === requestId), 5_000, 'the simulator to record the cancellation');
  t.ok(Math.abs(cancellation.at_ms - r.abortedAt!) <= 100, `the simulator saw the cancellation ${cancellation.at_ms - r.abortedAt!} ms after the client aborted (<= 100 ms)`);
  t.ok(cancellation.tokens_sent < TOKENS, `generation stopped early (${cancellation.tokens_sent} of ${TOKENS} tokens)`);
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
