// The simulator as a gateway sees it: a real child process on a real port, checked
// against the wire formats of protocols.md (Ollama part B, MLflow part A2).

import t from 'tap';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Agent, request as httpRequest } from 'node:http';
import {
  CLI,
  ensureBuilt,
  postJson,
  request,
  type SimProcess,
  sleep,
  startSimProcess,
  streamPost,
  waitForStats,
} from './fixtures/sim-process.js';

interface Stats {
  requests: number;
  active: number;
  completed: number;
  cancelled: number;
  cancellations: { request_id: string | null; path: string; at_ms: number; tokens_sent: number }[];
  errors_injected: number;
}

function expectedText(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += `tok${i} `;
  return s;
}

function ndjson(body: string): Record<string, unknown>[] {
  return body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** SSE events' data fields; asserts every event is `data: ...` followed by a blank line. */
interface Asserts {
  ok(value: unknown, message: string): unknown;
  match(found: unknown, pattern: RegExp, message: string): unknown;
}

function sseData(t: Asserts, body: string): string[] {
  t.ok(body.endsWith('\n\n'), 'stream ends with a blank line');
  const events = body.slice(0, -2).split('\n\n');
  for (const e of events) t.match(e, /^data: /, 'each event is a data line');
  return events.map((e) => e.slice('data: '.length));
}

ensureBuilt();

const sims: SimProcess[] = [];
async function sim(args: string[] = []): Promise<SimProcess> {
  const s = await startSimProcess(args);
  sims.push(s);
  return s;
}
t.teardown(async () => {
  await Promise.all(sims.map((s) => s.stop()));
});

t.test('Ollama native: readiness and listing endpoints', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '0', '--models', 'demo,llama3.2:1b']);
  const root = await request(s.port, '/');
  t.equal(root.status, 200);
  t.equal(root.body, 'Ollama is running');
  t.equal(root.headers['content-type'], 'text/plain; charset=utf-8');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const pooled = await request(s.port, '/api/version', { agent });
  t.equal(pooled.headers['keep-alive'], 'timeout=65', 'keep-alive outlives pooled gateway connections');
  agent.destroy();
  const head = await request(s.port, '/', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body, '');

  const version = JSON.parse((await request(s.port, '/api/version')).body) as { version: string };
  t.match(version.version, /^\d+\.\d+\.\d+$/);

  const tags = JSON.parse((await request(s.port, '/api/tags')).body) as { models: { name: string; model: string; digest: string }[] };
  t.same(tags.models.map((m) => m.name), ['demo:latest', 'llama3.2:1b']);
  t.equal(tags.models[0]!.model, 'demo:latest');
  t.match(tags.models[0]!.digest, /^[0-9a-f]{64}$/);

  t.same(JSON.parse((await request(s.port, '/api/ps')).body), { models: [] }, 'nothing loaded yet');
  await postJson(s.port, '/api/generate', { model: 'demo' });
  const ps = JSON.parse((await request(s.port, '/api/ps')).body) as { models: { name: string; expires_at: string }[] };
  t.equal(ps.models[0]?.name, 'demo:latest', 'a load request shows up in /api/ps');

  const show = await postJson(s.port, '/api/show', { model: 'demo' });
  t.equal(show.status, 200);
  t.match(JSON.parse(show.body), { details: { format: 'gguf' }, capabilities: ['completion'] });

  const unknownPath = await request(s.port, '/api/nope');
  t.equal(unknownPath.status, 404);
  t.equal(unknownPath.body, '404 page not found');
  const wrongMethod = await request(s.port, '/api/generate', { method: 'GET' });
  t.equal(wrongMethod.status, 405);
  t.equal(wrongMethod.body, '405 method not allowed');
});

t.test('Ollama native: NDJSON chunks arrive over time, final chunk carries metrics', async (t) => {
  const s = await sim(['--ttft-ms', '10', '--token-ms', '50', '--tokens', '6']);
  const r = await streamPost(s.port, '/api/generate', { model: 'demo:latest', prompt: 'why is the sky blue' });
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'application/x-ndjson');
  t.equal(r.headers['transfer-encoding'], 'chunked');
  t.ok(r.chunks.length >= 4, `tokens arrive as separate chunks (${r.chunks.length})`);
  t.ok(r.end - r.chunks[0]!.at >= 200, 'first chunk arrives well before the last token is produced');

  const lines = ndjson(r.chunks.map((c) => c.text).join(''));
  t.equal(lines.length, 7, '6 tokens + the done chunk');
  for (const l of lines.slice(0, -1)) {
    t.same(Object.keys(l), ['model', 'created_at', 'response', 'done']);
    t.equal(l.done, false);
    t.equal(l.model, 'demo:latest', 'model echoed as requested');
    t.match(l.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/);
  }
  const last = lines.at(-1)!;
  t.match(last, { response: '', done: true, done_reason: 'stop', eval_count: 6, prompt_eval_count: 5 });
  t.ok(Array.isArray(last.context), 'context on the final chunk');
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration']) {
    t.ok(Number.isInteger(last[k]) && (last[k] as number) > 0, `${k} is integer nanoseconds`);
  }
  t.ok((last.total_duration as number) >= 250e6, 'total_duration is in nanoseconds');
  t.equal(lines.map((l) => l.response).join(''), expectedText(6), 'deterministic token text');
});

t.test('ttft: the first streamed chunk waits --ttft-ms, and a runtime change applies to the next request', async (t) => {
  const s = await sim(['--ttft-ms', '300', '--token-ms', '10', '--tokens', '3']);
  // Warm up the process (JIT, first connection) so only the ttft shows in the timing.
  await postJson(s.port, '/_sim/config', {});
  const firstChunkAfter = async (protocolPath: string, body: Record<string, unknown>): Promise<number> => {
    const sent = performance.now();
    const r = await streamPost(s.port, protocolPath, body);
    t.equal(r.status, 200, `${protocolPath} answered`);
    return r.chunks[0]!.at - sent;
  };
  const ollama = await firstChunkAfter('/api/generate', { model: 'demo', prompt: 'x' });
  t.ok(ollama >= 280, `Ollama NDJSON: first chunk after ${Math.round(ollama)} ms, not before ~300`);
  t.ok(ollama < 300 + 700, `Ollama NDJSON: first chunk after ${Math.round(ollama)} ms, not much later than 300`);
  const sse = await firstChunkAfter('/v1/chat/completions', { model: 'demo', stream: true, messages: [{ role: 'user', content: 'x' }] });
  t.ok(sse >= 280 && sse < 300 + 700, `OpenAI SSE: first chunk after ${Math.round(sse)} ms (~300)`);

  t.equal((await postJson(s.port, '/_sim/config', { ttft_ms: 0 })).status, 200);
  const fast = await firstChunkAfter('/api/generate', { model: 'demo', prompt: 'x' });
  t.ok(fast < 200, `with ttft_ms 0 the first chunk comes at once (${Math.round(fast)} ms)`);
  t.equal((await postJson(s.port, '/_sim/config', { ttft_ms: 300 })).status, 200);
  const again = await firstChunkAfter('/api/generate', { model: 'demo', prompt: 'x' });
  t.ok(again >= 280 && again < 300 + 700, `set back to 300 at runtime: first chunk after ${Math.round(again)} ms`);
});

t.test('Ollama native: stream:false, num_predict, load/unload and errors', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '5']);
  const one = await postJson(s.port, '/api/generate', { model: 'demo', prompt: 'hi', stream: false, options: { num_predict: 3 } });
  t.equal(one.status, 200);
  t.equal(one.headers['content-type'], 'application/json; charset=utf-8');
  const body = JSON.parse(one.body) as Record<string, unknown>;
  t.match(body, { model: 'demo', response: expectedText(3), done: true, done_reason: 'length', eval_count: 3 });

  const chat = await postJson(s.port, '/api/chat', { model: 'demo', messages: [{ role: 'user', content: 'hello' }] });
  t.equal(chat.headers['content-type'], 'application/x-ndjson', 'chat streams by default');
  const chatLines = ndjson(chat.body);
  t.same(chatLines[0]!.message, { role: 'assistant', content: 'tok0 ' });
  t.match(chatLines.at(-1), { message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop' });
  t.notOk('context' in chatLines.at(-1)!, 'chat has no context');

  const load = await postJson(s.port, '/api/generate', { model: 'demo' });
  t.equal(load.headers['content-type'], 'application/json; charset=utf-8', 'load answer is one JSON even when streaming');
  t.match(JSON.parse(load.body), { response: '', done: true, done_reason: 'load' });
  t.match(JSON.parse((await postJson(s.port, '/api/generate', { model: 'demo', keep_alive: 0 })).body), { done_reason: 'unload' });
  t.match(JSON.parse((await postJson(s.port, '/api/chat', { model: 'demo', messages: [] })).body), {
    message: { role: 'assistant', content: '' },
    done_reason: 'load',
  });

  const cases: [string, unknown, number, unknown][] = [
    ['/api/generate', { model: 'llama9', prompt: 'x' }, 404, { error: "model 'llama9' not found" }],
    ['/api/generate', { prompt: 'x' }, 404, { error: "model '' not found" }],
    ['/api/chat', { messages: [{ role: 'user', content: 'x' }] }, 400, { error: 'model is required' }],
    ['/api/chat', { model: 'nope', messages: [{ role: 'user', content: 'x' }] }, 404, { error: "model 'nope' not found" }],
    ['/api/generate', { model: 'demo', prompt: 'x', keep_alive: '300' }, 400, { error: 'time: missing unit in duration "300"' }],
    ['/api/generate', { model: 'demo', prompt: 'x', top_logprobs: 21 }, 400, { error: 'top_logprobs must be between 0 and 20' }],
    ['/api/generate', { model: 'demo', prompt: 'x', raw: true, system: 's' }, 400, { error: 'raw mode does not support template, system, or context' }],
    ['/api/embed', { model: 'nope', input: 'x' }, 404, { error: 'model "nope" not found, try pulling it first' }],
    ['/api/embed', { model: 'demo', input: [1] }, 400, { error: 'invalid input type' }],
    ['/api/show', {}, 400, { error: 'model is required' }],
  ];
  for (const [path, req, status, want] of cases) {
    const r = await postJson(s.port, path, req);
    t.equal(r.status, status, `${path} ${JSON.stringify(req)} -> ${status}`);
    t.same(JSON.parse(r.body), want);
    t.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  }
  for (const path of ['/api/generate', '/api/chat', '/api/embed', '/api/embeddings']) {
    const r = await request(s.port, path, { method: 'POST' });
    t.equal(r.status, 400);
    t.same(JSON.parse(r.body), { error: 'missing request body' }, `${path} without body`);
  }
  const bad = await request(s.port, '/api/generate', { body: '{"model":' });
  t.equal(bad.status, 400);
  t.same(JSON.parse(bad.body), { error: 'unexpected EOF' });

  const embed = JSON.parse((await postJson(s.port, '/api/embed', { model: 'demo', input: ['a', 'b'] })).body) as { embeddings: number[][] };
  t.equal(embed.embeddings.length, 2);
  const norm = Math.sqrt(embed.embeddings[0]!.reduce((a, x) => a + x * x, 0));
  t.ok(Math.abs(norm - 1) < 1e-5, 'embed vectors are L2-normalised');
  t.same(JSON.parse((await postJson(s.port, '/api/embed', { model: 'demo', input: '' })).body), { model: 'demo', embeddings: [] });
  t.same(JSON.parse((await postJson(s.port, '/api/embeddings', { model: 'demo', prompt: '' })).body), { embedding: [] });
  const legacy = JSON.parse((await postJson(s.port, '/api/embeddings', { model: 'demo', prompt: 'a' })).body) as { embedding: number[] };
  t.ok(legacy.embedding.length > 0);
});

t.test('stop sequences end the answer before the token that completes one, with reason stop', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '0', '--tokens', '9']);
  const generate = await postJson(s.port, '/api/generate', { model: 'demo', prompt: 'hi', stream: false, options: { stop: ['nope', 'tok3'] } });
  t.match(JSON.parse(generate.body), { response: expectedText(3), done_reason: 'stop', eval_count: 3 }, 'Ollama options.stop');
  const chat = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: [{ role: 'user', content: 'hi' }], stop: 'k2 t' });
  const choice = (JSON.parse(chat.body) as { choices: Array<{ message: { content: string }; finish_reason: string }> }).choices[0]!;
  t.same([choice.message.content, choice.finish_reason], [expectedText(2), 'stop'], 'OpenAI stop as a string, across two tokens: the whole tokens before it');
  const streamed = await postJson(s.port, '/v1/completions', { model: 'demo', prompt: 'hi', stream: true, stop: ['tok1'] });
  t.equal(streamed.body.split('\n').filter((l) => l.includes('"text":"tok')).length, 1, 'streamed: one token, then the end');
  const limit = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: [{ role: 'user', content: 'hi' }], stop: ['tok8'], max_tokens: 2 });
  t.equal((JSON.parse(limit.body) as { choices: Array<{ finish_reason: string }> }).choices[0]!.finish_reason, 'length', 'a limit reached first is still length');
});

t.test('Ollama Host guard (DNS-rebinding protection)', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '0']);
  const deny = await request(s.port, '/api/tags', { headers: { host: 'gateway.example.com' } });
  t.equal(deny.status, 403);
  t.equal(deny.body, '', '403 with an empty body');
  for (const host of ['localhost:11434', '127.0.0.1:8080', '10.1.2.3', '[::1]:11434', 'box.internal', 'foo.local']) {
    t.equal((await request(s.port, '/api/tags', { headers: { host } })).status, 200, `Host ${host} allowed`);
  }
  const gen = await request(s.port, '/api/generate', { body: '{}', headers: { host: 'evil.example' } });
  t.equal(gen.status, 403, 'generation routes are guarded too');
  t.equal((await request(s.port, '/_sim/stats', { headers: { host: 'evil.example' } })).status, 200, '/_sim is not guarded');
});

t.test('OpenAI compatible: JSON by default, SSE stream, include_usage, errors', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '1', '--tokens', '3']);
  const msgs = [{ role: 'user', content: 'say hi' }];

  const plain = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: msgs });
  t.equal(plain.status, 200);
  t.match(plain.headers['content-type'], /^application\/json/);
  const c = JSON.parse(plain.body) as Record<string, unknown>;
  t.match(c, {
    object: 'chat.completion',
    model: 'demo',
    system_fingerprint: 'fp_ollama',
    choices: [{ index: 0, message: { role: 'assistant', content: expectedText(3) }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 },
  });
  t.match(c.id, /^chatcmpl-\d+$/);

  const streamed = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: msgs, stream: true, max_tokens: 2 });
  t.equal(streamed.headers['content-type'], 'text/event-stream');
  const data = sseData(t, streamed.body);
  t.equal(data.at(-1), '[DONE]');
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Record<string, any>);
  t.equal(chunks.length, 3, '2 content chunks + finish chunk, no usage chunk without include_usage');
  t.same(chunks[0]!.choices, [{ index: 0, delta: { role: 'assistant', content: 'tok0 ' }, finish_reason: null }]);
  t.same(chunks[1]!.choices, [{ index: 0, delta: { content: 'tok1 ' }, finish_reason: null }], 'role only on the first chunk');
  t.same(chunks[2]!.choices, [{ index: 0, delta: {}, finish_reason: 'length' }]);
  t.equal(new Set(chunks.map((ch) => ch.created)).size, 1, 'one created for all chunks');
  t.equal(new Set(chunks.map((ch) => ch.id)).size, 1);
  for (const ch of chunks) t.match(ch, { object: 'chat.completion.chunk', model: 'demo', system_fingerprint: 'fp_ollama' });

  const withUsage = await postJson(s.port, '/v1/chat/completions', {
    model: 'demo', messages: msgs, stream: true, stream_options: { include_usage: true },
  });
  const ud = sseData(t, withUsage.body);
  const usage = JSON.parse(ud.at(-2)!) as Record<string, unknown>;
  t.same(usage.choices, []);
  t.same(usage.usage, { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
  t.equal(ud.at(-1), '[DONE]');

  const comp = await postJson(s.port, '/v1/completions', { model: 'demo', prompt: 'once upon', stream: true });
  const cd = sseData(t, comp.body).slice(0, -1).map((d) => JSON.parse(d) as Record<string, any>);
  t.equal(cd.map((x) => x.choices[0].text).join(''), expectedText(3));
  t.equal(cd.at(-1)!.choices[0].finish_reason, 'stop');
  t.equal(cd[0]!.object, 'text_completion');
  const compPlain = JSON.parse((await postJson(s.port, '/v1/completions', { model: 'demo', prompt: 'x' })).body) as Record<string, any>;
  t.match(compPlain, { object: 'text_completion', choices: [{ text: expectedText(3), index: 0, finish_reason: 'stop' }] });

  const emb = JSON.parse((await postJson(s.port, '/v1/embeddings', { model: 'demo', input: ['a', 'b'] })).body) as Record<string, any>;
  t.match(emb, { object: 'list', model: 'demo', data: [{ object: 'embedding', index: 0 }, { object: 'embedding', index: 1 }] });

  const models = JSON.parse((await request(s.port, '/v1/models')).body) as Record<string, any>;
  t.match(models, { object: 'list', data: [{ id: 'demo:latest', object: 'model', owned_by: 'library' }] });
  t.match(JSON.parse((await request(s.port, '/v1/models/demo')).body), { id: 'demo', object: 'model' });

  const notFound = await postJson(s.port, '/v1/chat/completions', { model: 'x', messages: msgs });
  t.equal(notFound.status, 404);
  t.same(JSON.parse(notFound.body), { error: { message: "model 'x' not found", type: 'not_found_error', param: null, code: null } });
  const empty = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: [] });
  t.equal(empty.status, 400);
  t.same(JSON.parse(empty.body), { error: { message: "[] is too short - 'messages'", type: 'invalid_request_error', param: null, code: null } });
  const noBody = await request(s.port, '/v1/chat/completions', { method: 'POST' });
  t.equal(noBody.status, 400);
  t.equal((JSON.parse(noBody.body) as Record<string, any>).error.message, 'EOF');
});

t.test('--protocol openai serves only /v1 routes', async (t) => {
  const s = await sim(['--protocol', 'openai', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '2']);
  const r = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: [{ role: 'user', content: 'x' }] });
  t.equal(r.status, 200);
  const tags = await request(s.port, '/api/tags');
  t.equal(tags.status, 404);
  t.same(JSON.parse(tags.body), { error: { message: 'Invalid URL (GET /api/tags)', type: 'invalid_request_error', param: null, code: null } });
  t.equal((await request(s.port, '/v1/models', { headers: { host: 'anything.example' } })).status, 200, 'no Ollama Host guard');
});

t.test('MLflow scoring protocol', async (t) => {
  const s = await sim(['--protocol', 'mlflow', '--ttft-ms', '0']);
  for (const path of ['/ping', '/health']) {
    const r = await request(s.port, path);
    t.equal(r.status, 200);
    t.equal(r.body, '\n', `${path} body is one newline`);
    t.equal(r.headers['content-type'], 'application/json');
  }
  const v = await request(s.port, '/version');
  t.match(v.body, /^\d+\.\d+\.\d+$/, 'version is unquoted');

  const json = { 'content-type': 'application/json' };
  const formats: [unknown, number[]][] = [
    [{ dataframe_split: { columns: ['a', 'b'], data: [[1, 2], [3, 4]] } }, [3, 7]],
    [{ dataframe_records: [{ a: 1, b: 2 }, { a: 3, b: 4 }, { a: 0, b: 0 }] }, [3, 7, 0]],
    [{ instances: [[1, 1]] }, [2]],
    [{ inputs: { a: [1, 2], b: [10, 20] }, params: { k: 1 } }, [11, 22]],
  ];
  for (const [body, predictions] of formats) {
    const r = await request(s.port, '/invocations', { body: JSON.stringify(body), headers: json });
    t.equal(r.status, 200, Object.keys(body as object)[0]);
    t.equal(r.headers['content-type'], 'application/json');
    t.same(JSON.parse(r.body), { predictions });
  }
  const csv = await request(s.port, '/invocations', { body: 'a,b\n1,2\n3,4\n', headers: { 'content-type': 'text/csv' } });
  t.same(JSON.parse(csv.body), { predictions: [3, 7] });
  const utf8 = await request(s.port, '/invocations', { body: '{"inputs":[1]}', headers: { 'content-type': 'application/json; charset=UTF-8' } });
  t.equal(utf8.status, 200, 'charset=utf-8 parameter accepted');

  const wrongType = await request(s.port, '/invocations', { body: 'a', headers: { 'content-type': 'application/csv' } });
  t.equal(wrongType.status, 415);
  t.match(wrongType.headers['content-type'], /^text\/plain/);
  t.equal(wrongType.body, "This predictor only supports the following content types: Types: ['text/csv', 'application/json']. Got 'application/csv'.");
  const latin = await request(s.port, '/invocations', { body: '{}', headers: { 'content-type': 'application/json; charset=latin-1' } });
  t.equal(latin.status, 415);
  t.equal(latin.body, 'The scoring server only supports UTF-8');
  const params = await request(s.port, '/invocations', { body: '{}', headers: { 'content-type': 'application/json; format=pandas-split' } });
  t.equal(params.status, 415);
  t.match(params.body, /^Unrecognized content type parameters: format\. IMPORTANT: The MLflow Model scoring protocol has changed/);

  const badJson = await request(s.port, '/invocations', { body: '{nope', headers: json });
  t.equal(badJson.status, 400);
  t.equal(badJson.headers['content-type'], 'application/json');
  const bj = JSON.parse(badJson.body) as { error_code: string; message: string };
  t.equal(bj.error_code, 'BAD_REQUEST');
  t.match(bj.message, /^Invalid input\. Ensure that input is a valid JSON formatted string\. Error: '.*'\nInput: \n\{nope\n$/);

  const twoKeys = await request(s.port, '/invocations', { body: JSON.stringify({ inputs: [1], instances: [1] }), headers: json });
  t.equal(twoKeys.status, 400);
  const tk = JSON.parse(twoKeys.body) as { error_code: string; message: string };
  t.equal(tk.error_code, 'BAD_REQUEST');
  t.match(tk.message, "Received dictionary with input fields: ['inputs', 'instances']");
  const list = await request(s.port, '/invocations', { body: '[1,2]', headers: json });
  t.equal(list.status, 400);
  t.match(JSON.parse(list.body), { error_code: 'BAD_REQUEST', message: /Received a list\.$/ });

  const llm = await request(s.port, '/invocations', { body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }), headers: json });
  t.equal(llm.status, 200);
  t.notOk('predictions' in (JSON.parse(llm.body) as object), 'unified LLM bodies are not wrapped in predictions');

  const unknown = await request(s.port, '/api/tags');
  t.equal(unknown.status, 404);
  t.same(JSON.parse(unknown.body), { detail: 'Not Found' });
  t.equal((await request(s.port, '/invocations')).status, 405);
});

t.test('client disconnect is detected, counted and recorded within 100 ms', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '50', '--tokens', '1000']);
  let abortedAt = 0;
  await new Promise<void>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1', port: s.port, path: '/api/generate', method: 'POST', agent: false,
        headers: { 'content-type': 'application/json', 'x-request-id': 'cancel-me-1' },
      },
      (res) => {
        let chunks = 0;
        res.on('data', () => {
          if (++chunks === 2) {
            abortedAt = Date.now();
            req.destroy();
            resolve();
          }
        });
      },
    );
    req.on('error', (err) => {
      if (abortedAt === 0) reject(err);
    });
    req.end(JSON.stringify({ model: 'demo', prompt: 'a long story' }));
  });
  const stats = await waitForStats<Stats>(s.port, (st) => st.cancelled >= 1);
  t.equal(stats.cancelled, 1);
  t.equal(stats.active, 0, 'nothing left in flight (stats requests are not counted)');
  const c = stats.cancellations[0]!;
  t.equal(c.request_id, 'cancel-me-1');
  t.equal(c.path, '/api/generate');
  t.ok(c.at_ms - abortedAt < 100, `detected ${c.at_ms - abortedAt} ms after the abort`);
  t.ok(c.tokens_sent >= 2 && c.tokens_sent <= 4, `generation stopped at once (tokens_sent ${c.tokens_sent})`);
  await sleep(120);
  const later = JSON.parse((await request(s.port, '/_sim/stats')).body) as Stats;
  t.equal(later.cancellations[0]!.tokens_sent, c.tokens_sent, 'no tokens produced after the cancel');
  t.ok(
    s.stderrLines.some((l) => l.includes('"event":"cancelled"') && l.includes('cancel-me-1')),
    'a cancelled event line on stderr',
  );
});

t.test('crash_after exits the process mid-stream with code 1', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '10', '--tokens', '50', '--crash-after', '3']);
  const received = await new Promise<{ lines: string[]; error: boolean }>((resolve) => {
    let text = '';
    const req = httpRequest(
      { host: '127.0.0.1', port: s.port, path: '/api/generate', method: 'POST', agent: false },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ lines: text.split('\n').filter(Boolean), error: false }));
        res.on('error', () => resolve({ lines: text.split('\n').filter(Boolean), error: true }));
        res.on('aborted', () => resolve({ lines: text.split('\n').filter(Boolean), error: true }));
      },
    );
    req.on('error', () => resolve({ lines: text.split('\n').filter(Boolean), error: true }));
    req.end(JSON.stringify({ model: 'demo', prompt: 'x' }));
  });
  t.ok(received.error, 'the stream ends abruptly, not with a done chunk');
  t.equal(received.lines.length, 3, 'exactly crash_after tokens were delivered');
  for (const l of received.lines) t.equal((JSON.parse(l) as { done: boolean }).done, false);
  const exit = await s.exited;
  t.equal(exit.code, 1);
});

t.test('runtime config, error injection, hang and reset', async (t) => {
  const s = await sim(['--ttft-ms', '0', '--token-ms', '0']);
  const cfg = await postJson(s.port, '/_sim/config', { tokens: 2, token_ms: 0 });
  t.equal(cfg.status, 200);
  t.same(JSON.parse(cfg.body), {
    ttft_ms: 0, token_ms: 0, tokens: 2, error_rate: 0, hang: false, crash_after: 0, status: 0, status_delay_ms: 0,
    metrics: 'none', metrics_waiting: 0, metrics_kv_usage: 0,
  });
  const r = JSON.parse((await postJson(s.port, '/api/generate', { model: 'demo', prompt: 'x', stream: false })).body) as Record<string, unknown>;
  t.equal(r.response, expectedText(2), 'new token count applies to the next request');

  const bad = await postJson(s.port, '/_sim/config', { tokenz: 1 });
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body), { error: /unknown tunable 'tokenz'/ });
  t.equal((await postJson(s.port, '/_sim/config', { error_rate: 2 })).status, 400);

  await postJson(s.port, '/_sim/config', { status: 503 });
  const forced = await postJson(s.port, '/api/generate', { model: 'demo', prompt: 'x' });
  t.equal(forced.status, 503);
  t.same(JSON.parse(forced.body), { error: 'server busy, please try again.  maximum pending requests exceeded' });
  const forcedOpenAI = await postJson(s.port, '/v1/chat/completions', { model: 'demo', messages: [] });
  t.equal(forcedOpenAI.status, 503);
  t.match(JSON.parse(forcedOpenAI.body), { error: { type: 'api_error', param: null, code: null } });
  t.equal((await request(s.port, '/api/tags')).status, 200, 'non-generation routes are not forced');

  await postJson(s.port, '/_sim/config', { status: 0, error_rate: 1 });
  const failed = await postJson(s.port, '/api/chat', { model: 'demo', messages: [{ role: 'user', content: 'x' }] });
  t.equal(failed.status, 500);
  t.same(JSON.parse(failed.body), { error: 'simulated failure' });
  let stats = JSON.parse((await request(s.port, '/_sim/stats')).body) as Stats;
  t.equal(stats.errors_injected, 3);

  // status_delay_ms: the forced status comes only after the delay, as from a server that gave up on the request.
  await postJson(s.port, '/_sim/config', { error_rate: 0, status: 503, status_delay_ms: 150 });
  const sent = performance.now();
  const late = await postJson(s.port, '/api/generate', { model: 'demo', prompt: 'x' });
  t.equal(late.status, 503);
  t.ok(performance.now() - sent >= 140, 'answered after the delay');
  await postJson(s.port, '/_sim/config', { status: 0, status_delay_ms: 0 });

  await postJson(s.port, '/_sim/config', { error_rate: 0, hang: true });
  const ac = new AbortController();
  const hung = fetch(`${s.base}/api/tags`, { signal: ac.signal }).then(
    () => 'answered',
    () => 'aborted',
  );
  await sleep(150);
  ac.abort();
  t.equal(await hung, 'aborted', 'a hung request never answers');
  stats = await waitForStats<Stats>(s.port, (st) => st.cancelled >= 1);
  t.equal(stats.cancellations.at(-1)!.path, '/api/tags', 'giving up on a hung request is a cancellation');
  await postJson(s.port, '/_sim/config', { hang: false });

  const reset = await request(s.port, '/_sim/reset', { method: 'POST' });
  t.equal(reset.status, 200);
  stats = JSON.parse((await request(s.port, '/_sim/stats')).body) as Stats;
  t.match(stats, { requests: 0, completed: 0, cancelled: 0, cancellations: [], errors_injected: 0 });
});

t.test('/_sim fixtures: echo, sleep, 64 MiB download and upload', async (t) => {
  const s = await sim([]);
  const echo = await request(s.port, '/_sim/echo/some/path?x=1', {
    method: 'PUT',
    body: 'hello',
    headers: { 'X-Custom': 'A', 'x-dup': ['1', '2'] },
  });
  const e = JSON.parse(echo.body) as { method: string; url: string; headers: Record<string, unknown>; body_bytes: number };
  t.equal(e.method, 'PUT');
  t.equal(e.url, '/_sim/echo/some/path?x=1');
  t.equal(e.body_bytes, 5);
  t.equal(e.headers['x-custom'], 'A', 'names lower-cased, values as received');
  t.same(e.headers['x-dup'], ['1', '2'], 'repeated headers kept');

  const t0 = performance.now();
  const slept = await request(s.port, '/_sim/sleep?ms=80');
  t.ok(performance.now() - t0 >= 75);
  t.same(JSON.parse(slept.body), { slept_ms: 80 });

  const size = 64 * 1024 * 1024;
  const expected = createHash('sha256');
  const pattern = Buffer.alloc(251 * 4096);
  for (let i = 0; i < pattern.length; i++) pattern[i] = i % 251;
  for (let off = 0; off < size; off += pattern.length) expected.update(pattern.subarray(0, Math.min(pattern.length, size - off)));
  const expectedHex = expected.digest('hex');

  const down = await new Promise<{ bytes: number; sha: string; length: string | undefined }>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: s.port, path: `/_sim/download?bytes=${size}&chunk=65536`, agent: false }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        h.update(c);
      });
      res.on('end', () => resolve({ bytes, sha: h.digest('hex'), length: res.headers['content-length'] }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
  t.equal(down.bytes, size);
  t.equal(down.length, String(size));
  t.equal(down.sha, expectedHex, 'download is the i % 251 pattern');

  const up = await new Promise<string>((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: s.port, path: '/_sim/upload', method: 'POST', agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        const n = Math.min(pattern.length, size - sent);
        sent += n;
        if (!req.write(pattern.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
  t.same(JSON.parse(up), { bytes: size, sha256: expectedHex });
});

t.test('bad flags exit with code 2 and name the flag', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--tokens', 'abc', '--port', '0'], /--tokens/],
    [['--ttft-ms', '0'], /--port is required/],
    [['--port', '0', '--bogus'], /unknown flag '--bogus'/],
    [['--port', '0', '--protocol', 'grpc'], /--protocol/],
    [['--port', '0', '--error-rate', '1.5'], /--error-rate/],
  ];
  // In parallel: each case is a node start-up, the slowest part of this file.
  const results = await Promise.all(
    cases.map(
      ([args]) =>
        new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [CLI, 'sim', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
          let stderr = '';
          child.stderr.setEncoding('utf8');
          child.stderr.on('data', (d: string) => (stderr += d));
          child.on('close', (code) => resolve({ code, stderr }));
        }),
    ),
  );
  cases.forEach(([args, msg], i) => {
    t.equal(results[i]!.code, 2, args.join(' '));
    t.match(results[i]!.stderr, msg);
  });
});
