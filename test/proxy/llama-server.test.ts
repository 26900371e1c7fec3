// A real OpenAI-compatible model server behind the gateway: llama-cpp-python's
// (FastAPI/uvicorn over llama.cpp) serving a tiny random-weight GGUF written at start-up
// (test/fixtures/llama-server.ts; DESIGN.md "Real parts"). Completions, a token stream and
// the model list go through sluice, once to a server the test started (`remote`) and once
// to one the gateway launched itself (`command` with `{port}`).
//
// That server answers 400 with an empty body to any x-request-id that is not a UUID
// (starlette-context's RequestIdPlugin): the last test documents the rule on the server
// itself, so that a gateway id of another shape fails here first.

import t from 'tap';
import { llamaPython, llamaServerArgs, startLlamaServer, type LlamaServer } from '../fixtures/llama-server.js';
import { httpRequest, json, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PRINTABLE = /^[\x20-\x7e]+$/;

interface ChatCompletion {
  id: string;
  object: string;
  model: string;
  choices: Array<{ index: number; message: { role: string; content: string }; finish_reason: string }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

interface ChatChunk {
  object: string;
  model: string;
  choices: Array<{ index: number; delta: { role?: string; content?: string }; finish_reason: string | null }>;
}

// Replica ports 18485-18489 belong to this file (test/proxy uses 18400-18499).
let llama: LlamaServer;
let gw: Gateway;

t.before(async () => {
  llama = await startLlamaServer({ alias: 'tiny' });
  t.comment(`tiny GGUF written in ${Math.round(llama.timings.ggufMs)} ms; llama_cpp.server ready in ${Math.round(llama.timings.readyMs)} ms`);
  gw = await startGateway({
    ports: { from: 18485, to: 18489 },
    deployments: [
      { model: 'tiny', version: '1', runtime: 'remote', urls: [llama.url] },
      {
        model: 'tiny',
        version: '2',
        runtime: 'command',
        command: [llamaPython(), ...llamaServerArgs(llama.modelPath, 'tiny2', '{port}')],
        readiness_path: '/v1/models',
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await llama?.stop();
});

const chat = (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Reply> =>
  httpRequest(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

/** Values of every x-request-id header of a reply, as received (a duplicate shows up here). */
const requestIds = (r: Reply): string[] =>
  r.rawHeaders.flatMap((name, i) => (i % 2 === 0 && name.toLowerCase() === 'x-request-id' ? [r.rawHeaders[i + 1]!] : []));

t.test('a chat completion through the gateway is a real one', async (t) => {
  const r = await chat('/tiny-1/v1/chat/completions', { model: 'tiny', max_tokens: 8, messages: [{ role: 'user', content: 'Say something.' }] });
  t.equal(r.status, 200, 'answered 200', { body: r.body });
  t.match(r.headers['content-type'], /^application\/json/);
  const ids = requestIds(r);
  t.equal(ids.length, 1, 'one x-request-id header (the upstream echo is not passed on twice)');
  t.match(ids[0], UUID_V4, 'the id the gateway made is a UUID v4, which the server accepted');
  const body = json<ChatCompletion>(r);
  t.equal(body.object, 'chat.completion');
  t.equal(body.model, 'tiny');
  t.equal(body.choices.length, 1);
  const choice = body.choices[0]!;
  t.equal(choice.message.role, 'assistant');
  t.match(choice.message.content, PRINTABLE, `generated text: ${JSON.stringify(choice.message.content)}`);
  // The tiny model never picks </s>: generation runs to max_tokens, one byte token each.
  t.equal(choice.finish_reason, 'length');
  t.equal(body.usage.completion_tokens, 8);
  t.ok(body.usage.prompt_tokens > 0, `prompt_tokens ${body.usage.prompt_tokens}`);
  t.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
});

t.test('a streamed chat completion arrives as SSE chunks ending with [DONE]', async (t) => {
  const TOKENS = 12;
  const r = await chat('/tiny-1/v1/chat/completions', { model: 'tiny', stream: true, max_tokens: TOKENS, messages: [{ role: 'user', content: 'Tell me a story.' }] });
  t.equal(r.status, 200, 'answered 200', { body: r.body });
  t.match(r.headers['content-type'], /^text\/event-stream/);
  t.equal(r.headers['content-length'], undefined, 'a stream has no content-length');
  t.ok(r.complete, 'the stream ended properly');
  t.match(r.headers['x-request-id'], UUID_V4);

  const events = r.body.split(/\r?\n\r?\n/).map((e) => e.trim()).filter((e) => e.length > 0);
  t.ok(events.every((e) => e.startsWith('data: ')), 'every event is a data: line');
  t.equal(events.at(-1), 'data: [DONE]', 'the stream ends with data: [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as ChatChunk);
  t.ok(chunks.length >= TOKENS, `${chunks.length} chunks for ${TOKENS} tokens`);
  t.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'tiny'));
  const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  t.equal(content.length, TOKENS, `streamed text: ${JSON.stringify(content)}`);
  t.match(content, PRINTABLE);
  t.equal(chunks.filter((c) => (c.choices[0]?.delta.content ?? '') !== '').length, TOKENS, 'one content chunk per token');
  t.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'length');
});

t.test('GET /v1/models through the gateway lists the served model', async (t) => {
  for (const [path, id] of [['/tiny-1/v1/models', 'tiny'], ['/tiny-2/v1/models', 'tiny2']] as const) {
    const r = await httpRequest(`${gw.url}${path}`);
    t.equal(r.status, 200, `${path} answered 200`, { body: r.body });
    const body = json<{ object: string; data: Array<{ id: string; object: string }> }>(r);
    t.equal(body.object, 'list');
    t.same(body.data.map((m) => m.id), [id], path);
  }
});

t.test('a server the gateway launched itself (`command`, {port}) streams too', async (t) => {
  const r = await chat('/tiny-2/v1/chat/completions', { model: 'tiny2', stream: true, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.status, 200, 'answered 200', { body: r.body });
  t.match(r.body, /^data: \{/);
  t.match(r.body, /data: \[DONE\]\s*$/);
});

t.test('the alias /tiny/ goes to the last-declared version', async (t) => {
  const models = await httpRequest(`${gw.url}/tiny/v1/models`);
  t.equal(models.status, 200, 'answered 200', { body: models.body });
  t.same(json<{ data: Array<{ id: string }> }>(models).data.map((m) => m.id), ['tiny2']);
  const r = await chat('/tiny/v1/chat/completions', { model: 'tiny2', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.status, 200, 'answered 200', { body: r.body });
  t.equal(json<ChatCompletion>(r).usage.completion_tokens, 2);
});

t.test('x-request-id: the client\'s UUID is kept; the server refuses ids that are not UUIDs', async (t) => {
  const mine = '3f2b8c1d-9e4a-4b7c-8d6e-5a4f3e2d1c0b';
  const r = await chat('/tiny-1/v1/chat/completions', { model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }, { 'x-request-id': mine });
  t.equal(r.status, 200, 'answered 200', { body: r.body });
  t.same(requestIds(r), [mine], 'the id the client sent comes back, once');

  // The server's own rule, without the gateway: this is why sluice's ids are UUIDs. The id
  // below has the shape sluice used to generate (a prefix, a hyphen, a counter).
  const direct = (id: string): Promise<Reply> => httpRequest(`${llama.url}/v1/models`, { headers: { 'x-request-id': id } });
  const refused = await direct('817235f41-2');
  t.equal(refused.status, 400, 'a non-UUID x-request-id is refused');
  t.equal(refused.body, '', 'with an empty body');
  const accepted = await direct(mine);
  t.equal(accepted.status, 200, 'a UUID is accepted');
  t.equal(accepted.headers['x-request-id'], mine, 'and echoed by the server');
});
