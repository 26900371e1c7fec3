// A Responses API stream (`/v1/responses`) the gateway fails after its head (here its total
// timeout) ends with an event of that stream's own shape: `type: "error"`, a
// `sequence_number`, the message in `error`, as api.openai.com sends it. The AI SDK's
// Responses provider (the default of `@ai-sdk/openai`) validates every event by its `type`
// and showed "Type validation failed" for sluice's bare `{"error":{...}}`; the openai SDK
// throws the message either way. Chat Completions streams keep sluice's shape.

import OpenAI from 'openai';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 20110-20114 belong to this file.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 20110, to: 20114 },
    deployments: [
      // Ten tokens 100 ms apart: the 500 ms total timeout falls mid-stream.
      { model: 'cut', version: '1', runtime: 'sim', args: ['--tokens', '10', '--ttft-ms', '1', '--token-ms', '100'], policies: { total_timeout_ms: 500 } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

/** The data of each event of an SSE body, with its event name. */
function events(body: string): Array<{ event: string; data: string }> {
  return body.split('\n\n').filter((block) => block.includes('data: ')).map((block) => ({
    event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message',
    data: /^data: (.*)$/m.exec(block)![1]!,
  }));
}

const post = (path: string, body: unknown): ReturnType<typeof httpRequest> =>
  httpRequest(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('a Responses stream cut by the gateway ends with an error event in the Responses shape', async (t) => {
  for (const path of ['/v1/responses', '/cut-1/v1/responses']) {
    const r = await post(path, { model: 'cut', stream: true, input: 'hi' });
    t.equal(r.status, 200, `${path}: the stream had started`);
    const all = events(r.body);
    t.ok(all.some((e) => e.event === 'response.output_text.delta'), `${path}: tokens came first`);
    const last = all.at(-1)!;
    t.equal(last.event, 'error');
    t.match(JSON.parse(last.data), {
      type: 'error', sequence_number: Number,
      error: { type: 'server_error', code: 'SLUICE_ERR_TOTAL_TIMEOUT', message: 'the request exceeded the total timeout', request_id: r.headers['x-request-id'] },
    }, `${path}: an event of the stream, its message in error`);
  }
});

t.test('the openai SDK throws its message', async (t) => {
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-not-checked', maxRetries: 0 });
  const stream = await client.responses.create({ model: 'cut', stream: true, input: 'hi' });
  const thrown = await (async () => {
    for await (const _ of stream) { /* tokens until the error */ }
  })().then(() => null, (e: unknown) => e);
  t.type(thrown, OpenAI.APIError);
  t.equal((thrown as InstanceType<typeof OpenAI.APIError>).message, 'the request exceeded the total timeout');
});

t.test('a Chat Completions stream keeps sluice\'s error shape', async (t) => {
  const r = await post('/v1/chat/completions', { model: 'cut', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const last = events(r.body).at(-1)!;
  t.equal(last.event, 'error');
  t.same(JSON.parse(last.data), { error: { code: 'SLUICE_ERR_TOTAL_TIMEOUT', message: 'the request exceeded the total timeout', request_id: r.headers['x-request-id'] } });
});
