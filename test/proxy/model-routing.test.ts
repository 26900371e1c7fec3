// One base URL for every model: the official `openai` and `ollama` npm clients pointed at
// the gateway's root pick the deployment by the body's `model` (`name-version` pins a
// version, `name` is the alias, Ollama's `name:tag` is version `tag`), list the models the
// caller may use, and get the protocol's own error for an unknown model. A deployment's
// served_model is what its server is asked for, at the root and on path routes alike.

import OpenAI from 'openai';
import { Ollama } from 'ollama';
import t from 'tap';
import { httpRequest, json, rawRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18890-18899 belong to this file.
const KEY = 'sk-front-0123456789abcdef-FRONTKEY';
let gw: Gateway;
let openai: OpenAI;
let ollama: Ollama;

t.before(async () => {
  gw = await startGateway({
    // 18899 is left closed: the `gone` deployment's replica.
    ports: { from: 18890, to: 18898 },
    limits: { max_buffered_body_bytes: 65_536 },
    api_keys: [{ name: 'front', key: KEY, deployments: ['secret-1'] }],
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim', args: ['--token-ms', '1', '--ttft-ms', '0'] },
      // Its server knows only `llama3:8b`: a request reaches it only when rewritten.
      { model: 'chat', version: '2', runtime: 'sim', args: ['--models', 'llama3:8b', '--token-ms', '1', '--ttft-ms', '0'], served_model: 'llama3:8b' },
      { model: 'secret', version: '1', runtime: 'sim', args: ['--token-ms', '1', '--ttft-ms', '0'], policies: { auth: { required: true } } },
      // The gateway's own errors: a rate limit, and a replica that refuses connections.
      { model: 'limited', version: '1', runtime: 'sim', args: ['--token-ms', '1', '--ttft-ms', '0'], policies: { rate_limit: { requests_per_minute: 1 } } },
      {
        model: 'gone', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:18899'], health_check: { enabled: false },
        policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
      },
    ],
  });
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-not-checked', maxRetries: 0 });
  ollama = new Ollama({ host: gw.url });
});

t.teardown(async () => {
  await gw?.stop();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> =>
  httpRequest(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];

t.test('the openai SDK at the gateway root: the body\'s model picks the deployment', async (t) => {
  const pinned = await openai.chat.completions.create({ model: 'demo-1', messages: MESSAGES, max_tokens: 3 });
  t.equal(pinned.object, 'chat.completion');
  t.equal(pinned.choices[0]?.message.content, 'tok0 tok1 tok2 ');
  const viaAlias = await openai.chat.completions.create({ model: 'demo', messages: MESSAGES, max_tokens: 2 }).withResponse();
  t.equal(viaAlias.response.headers.get('x-sluice-version'), '1', 'the alias picked version 1 and says so');
  const rewritten = await openai.chat.completions.create({ model: 'chat', messages: MESSAGES, max_tokens: 2 });
  t.equal(rewritten.model, 'llama3:8b', 'chat-2 served it, asked for its served_model');

  const stream = await openai.chat.completions.create({ model: 'chat-2', messages: MESSAGES, max_tokens: 5, stream: true });
  const pieces: string[] = [];
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice?.delta.content) pieces.push(choice.delta.content);
    if (choice?.finish_reason) finish = choice.finish_reason;
  }
  t.same(pieces, ['tok0 ', 'tok1 ', 'tok2 ', 'tok3 ', 'tok4 '], 'each token arrives as its own chunk');
  t.equal(finish, 'length');

  const embedding = await openai.embeddings.create({ model: 'demo-1', input: 'hello' });
  t.ok(embedding.data[0]!.embedding.length > 0, 'embeddings are routed by model too');
});

t.test('models.list() names every routable deployment and alias the caller may use', async (t) => {
  const ids = (await openai.models.list()).data.map((m) => m.id).sort();
  t.same(ids, ['chat', 'chat-2', 'demo', 'demo-1', 'gone', 'gone-1', 'limited', 'limited-1'], 'without a key: not the deployment that needs one');
  const keyed = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 });
  t.same((await keyed.models.list()).data.map((m) => m.id).sort(), ['chat', 'chat-2', 'demo', 'demo-1', 'gone', 'gone-1', 'limited', 'limited-1', 'secret', 'secret-1'], 'a key adds what its scope allows');
  const one = await openai.models.retrieve('demo-1');
  t.match(one, { id: 'demo-1', object: 'model', owned_by: 'sluice' });
  t.ok(one.created > 1_700_000_000, 'created is a real time in seconds');
  const hidden = await openai.models.retrieve('secret-1').then(() => null, (e: unknown) => e);
  t.ok(hidden instanceof OpenAI.NotFoundError, 'a model the caller may not use is not there');
  // Ollama's spelling, which the root routes: Ollama's own /v1/models/<id> answers it as asked.
  t.match(await openai.models.retrieve('demo:1'), { id: 'demo:1', object: 'model', owned_by: 'sluice' });
  t.match(await openai.models.retrieve('demo:latest'), { id: 'demo:latest', object: 'model' });
  const hiddenTag = await openai.models.retrieve('secret:1').then(() => null, (e: unknown) => e);
  t.ok(hiddenTag instanceof OpenAI.NotFoundError, 'nor in Ollama\'s spelling');
});

t.test('an unknown or missing model gets the protocol\'s own error', async (t) => {
  const err = await openai.chat.completions.create({ model: 'nope', messages: MESSAGES }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof OpenAI.NotFoundError, 'the SDK raises NotFoundError');
  const notFound = err as InstanceType<typeof OpenAI.NotFoundError>;
  t.equal(notFound.code, 'model_not_found');
  t.equal(notFound.param, 'model');
  t.equal(notFound.type, 'invalid_request_error');
  t.match(notFound.message, /The model 'nope' does not exist/);
  t.match(notFound.headers?.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/, 'with a request id');

  const missing = await post('/v1/chat/completions', { messages: MESSAGES });
  t.equal(missing.status, 400);
  t.match(json(missing), { error: { param: 'model', message: 'you must provide a model parameter' } });
  const notString = await post('/v1/chat/completions', { model: 7, messages: MESSAGES });
  t.equal(notString.status, 400);
  const broken = await post('/v1/chat/completions', '{"model": "demo-1", "messages": [');
  t.equal(broken.status, 400, 'a body that is not JSON');
  t.match(json(broken), { error: { type: 'invalid_request_error' } });
  const twice = await post('/v1/chat/completions', '{"model":"demo-1","messages":[],"model":"secret-1"}');
  t.equal(twice.status, 400, 'two top-level models: the gateway and the server must not read different ones');
  for (const [path, body] of [
    ['/v1/chat/completions', `{"model":"demo-1","messages":${JSON.stringify(MESSAGES)},"mod\\u0065l":"demo-2"}`],
    ['/api/chat', `{"\\u006dodel":"demo:2","model":"demo:1","messages":${JSON.stringify(MESSAGES)}}`],
  ] as const) {
    const escaped = await post(path, body);
    t.equal(escaped.status, 400, `${path}: a second model spelled with a \\u escape is the same key to the server: refused`);
    t.match(escaped.body, /given more than once/);
  }

  const ollamaMissing = await post('/api/chat', { messages: MESSAGES });
  t.equal(ollamaMissing.status, 400);
  t.equal(json(ollamaMissing).error, 'model is required');
  const unknown = await ollama.chat({ model: 'nope', messages: MESSAGES }).then(() => null, (e: unknown) => e as { status_code: number; error: string });
  t.equal(unknown?.status_code, 404);
  t.equal(unknown?.error, "model 'nope' not found", 'the ollama client shows Ollama\'s message');
});

t.test('the model is read from the top level only', async (t) => {
  // A `"model"` inside a message, before the real one: routed by the top-level field.
  const tricky = '{"messages":[{"role":"user","content":"{\\"model\\": \\"secret-1\\"}"}],"max_tokens":2,"model":"chat-2"}';
  const r = await post('/v1/chat/completions', tricky);
  t.equal(r.status, 200);
  t.equal(json(r).model, 'llama3:8b', 'chat-2 answered');
  const nested = await post('/v1/chat/completions', '{"metadata":{"model":"secret-1"},"model":"demo-1","messages":[{"role":"user","content":"hi"}],"max_tokens":1}');
  t.equal(nested.status, 200, 'a nested model field is not the request\'s');
});

t.test('the ollama client at the gateway root', async (t) => {
  const tags = (await ollama.list()).models.map((m) => m.name).sort();
  t.same(tags, ['chat:2', 'chat:latest', 'demo:1', 'demo:latest', 'gone:1', 'gone:latest', 'limited:1', 'limited:latest']);
  t.ok((await ollama.ps()).models.some((m) => m.name === 'demo:1'), 'ps lists what has a ready replica');
  t.match(await ollama.version(), { version: /^\d+\.\d+\.\d+$/ });
  const chat = await ollama.chat({ model: 'demo:1', messages: MESSAGES, stream: false, options: { num_predict: 3 } });
  t.equal(chat.message.content, 'tok0 tok1 tok2 ');
  t.equal(chat.done, true);
  const chunks: string[] = [];
  for await (const part of await ollama.generate({ model: 'chat', prompt: 'hi', stream: true, options: { num_predict: 4 } })) {
    if (part.response) chunks.push(part.response);
    if (part.done) t.equal(part.model, 'llama3:8b', 'the alias chat:latest went to chat-2, asked for llama3:8b');
  }
  t.same(chunks, ['tok0 ', 'tok1 ', 'tok2 ', 'tok3 '], 'an NDJSON stream, one line per token');
  const shown = await ollama.show({ model: 'demo:1' });
  t.ok(typeof shown.modelfile === 'string', '/api/show goes to the model\'s server');
});

t.test('served_model is what a path route\'s server is asked for too', async (t) => {
  const r = await post('/chat-2/v1/chat/completions', { model: 'anything', messages: MESSAGES, max_tokens: 2 });
  t.equal(r.status, 200, 'the body said `anything`; the server only knows llama3:8b');
  t.equal(json(r).model, 'llama3:8b');
  const gen = await post('/chat-2/api/generate', { model: 'x', prompt: 'hi', stream: false, options: { num_predict: 2 } });
  t.equal(gen.status, 200);
  t.equal(json(gen).model, 'llama3:8b');
  const other = await post('/chat-2/api/tags', {});
  t.equal(other.status, 405, 'other paths are forwarded as they are (the server\'s own answer)');
  // The server reads the last `model` (JSON.parse, Python's json), or reads past a BOM: unrenamed, the client picks its model.
  for (const [what, body] of [
    ['model twice', `{"model":"x","messages":${JSON.stringify(MESSAGES)},"model":"llama3:70b"}`],
    ['a second model spelt with a \\u escape', `{"model":"x","messages":${JSON.stringify(MESSAGES)},"\\u006dodel":"llama3:70b"}`],
    ['a UTF-8 BOM before the JSON', `\ufeff{"model":"llama3:70b","messages":${JSON.stringify(MESSAGES)}}`],
  ] as const) {
    const r = await post('/chat-2/v1/chat/completions', body);
    t.equal(r.status, 400, `${what}: refused, as at the root`);
    t.match(json(r), { error: { type: 'invalid_request_error' } }, `${what}: in OpenAI's shape`);
  }
});

t.test('API key scopes apply at the root as on paths', async (t) => {
  const none = await post('/v1/chat/completions', { model: 'secret-1', messages: MESSAGES, max_tokens: 1 });
  t.equal(none.status, 401);
  const keyed = await post('/v1/chat/completions', { model: 'secret-1', messages: MESSAGES, max_tokens: 1 }, { authorization: `Bearer ${KEY}` });
  t.equal(keyed.status, 200);
});

t.test('the response cache applies at the root as on paths', async (t) => {
  const body = { model: 'demo-1', messages: [{ role: 'user', content: 'cache me' }], temperature: 0, max_tokens: 2 };
  const first = await post('/v1/chat/completions', body);
  const second = await post('/v1/chat/completions', body);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(second.headers['x-sluice-cache'], 'hit');
  t.equal(second.body, first.body);
});

t.test('limits and methods', async (t) => {
  const big = await post('/v1/chat/completions', { model: 'demo-1', messages: [{ role: 'user', content: 'x'.repeat(70_000) }] });
  t.equal(big.status, 413, 'over limits.max_buffered_body_bytes');
  const bigOnPath = await post('/chat-2/v1/chat/completions', { model: 'chat', messages: [{ role: 'user', content: 'x'.repeat(70_000) }] });
  t.equal(bigOnPath.status, 413, 'a path route that rewrites the model reads its body whole too: the same limit');
  const chunked = await rawRequest(gw.port, 'POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n', {
    body: [Buffer.from('10\r\n{"model":"demo-1\r\n'), Buffer.from('2e\r\n","max_tokens":1,"messages":[{"role":"user"}]}\r\n0\r\n\r\n')],
  });
  t.equal(chunked.status, 200, 'a chunked upload is read whole, then routed');
  const get = await httpRequest(`${gw.url}/v1/chat/completions`);
  t.equal(get.status, 405);
  t.equal(get.headers.allow, 'POST');
  const postModels = await post('/v1/models', {});
  t.equal(postModels.status, 405);
  const admin = await httpRequest(`${gw.adminUrl}/v1/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'v1', version: '1', runtime: 'sim' }) });
  t.equal(admin.status, 400, 'a model named v1 would hide the front door');
  t.match(admin.body, /model/);
});

t.test('the gateway\'s own errors at Ollama\'s root API take Ollama\'s shape, so its client shows them', async (t) => {
  type OllamaError = { status_code: number; error: string };
  const refused = (e: unknown): OllamaError => e as OllamaError;
  t.equal((await ollama.chat({ model: 'limited:1', messages: MESSAGES, stream: false })).done, true, 'the first request of the minute');
  const limited = await ollama.chat({ model: 'limited:1', messages: MESSAGES, stream: false }).then(() => null, refused);
  t.equal(limited?.status_code, 429);
  t.match(limited?.error, /^rate limit exceeded: /, 'the message as is, not an object');
  const gone = await ollama.generate({ model: 'gone:1', prompt: 'hi', stream: false }).then(() => null, refused);
  t.equal(gone?.status_code, 502);
  t.equal(typeof gone?.error, 'string');
  const raw = await post('/api/generate', { model: 'gone:1', prompt: 'hi' });
  t.match(json(raw), { error: String, request_id: raw.headers['x-request-id'] }, 'with the request id');
  // OpenAI's root API and the path routes keep sluice's shape (OpenAI clients read error.message and error.code).
  const viaOpenAi = await post('/v1/chat/completions', { model: 'limited-1', messages: MESSAGES });
  t.equal(viaOpenAi.status, 429);
  t.match(json(viaOpenAi), { error: { code: 'SLUICE_ERR_RATE_LIMITED', message: String } });
  const viaPath = await post('/limited-1/api/chat', { model: 'limited', messages: MESSAGES });
  t.match(json(viaPath), { error: { code: 'SLUICE_ERR_RATE_LIMITED' } });
});

t.test('every gateway error on Ollama\'s API is Ollama-shaped: too large, wrong method, no such endpoint', async (t) => {
  type OllamaError = { status_code: number; error: string };
  const big = await ollama.chat({ model: 'demo:1', stream: false, messages: [{ role: 'user', content: 'x'.repeat(70_000) }] }).then(() => null, (e: unknown) => e as OllamaError);
  t.equal(big?.status_code, 413);
  t.match(big?.error, /exceeds .*\(limits\.max_buffered_body_bytes\)/, 'the ollama client shows the message, naming the setting, not [object Object]');
  const pull = await ollama.pull({ model: 'demo:1', stream: false }).then(() => null, (e: unknown) => e as OllamaError);
  t.equal(pull?.status_code, 404, 'an Ollama endpoint the gateway does not serve');
  t.match(pull?.error, /no deployment serves \/api\/pull/);
  for (const [method, path, status] of [['GET', '/api/chat', 405], ['POST', '/api/tags', 405], ['DELETE', '/api/delete', 404]] as const) {
    const r = await httpRequest(`${gw.url}${path}`, { method });
    t.equal(r.status, status, `${method} ${path}`);
    t.match(json(r), { error: String, request_id: r.headers['x-request-id'] }, `${method} ${path}: {"error":"<message>"}`);
  }
});

t.test('/api/show takes Ollama\'s deprecated name when model is not given', async (t) => {
  const r = await post('/api/show', { name: 'demo:1' });
  t.equal(r.status, 200, `routed by name: ${r.body.slice(0, 120)}`);
  t.ok(typeof (json(r) as { modelfile?: unknown }).modelfile === 'string');
  const both = await post('/api/show', { model: 'demo:1', name: 'nope:1' });
  t.equal(both.status, 200, 'model wins over name, as in Ollama');
});

t.test('GET and HEAD / answer as Ollama does: its CLI checks it before any command', async (t) => {
  const get = await httpRequest(`${gw.url}/`);
  t.equal(get.status, 200);
  t.equal(get.body, 'Ollama is running');
  t.match(get.headers['content-type'], /^text\/plain/);
  const head = await httpRequest(`${gw.url}/`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body, '');
  t.equal((await httpRequest(`${gw.url}/`, { method: 'POST' })).status, 404, 'other methods: no route');
});
