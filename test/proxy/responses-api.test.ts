// OpenAI's Responses API through the gateway with the official `openai` client: the
// simulator serves /v1/responses as api.openai.com does (a message item; named SSE events
// ending with response.completed), the front door routes it by the body's model, and the
// cost splits its usage into input and output tokens (`input_tokens`, `output_tokens`),
// not all of it as output.

import OpenAI from 'openai';
import t from 'tap';
import { responseText } from '../../src/sim/fake.js';
import { adminClient, reapServers } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 19330-19334 belong to this file.
const RANGE = { from: 19330, to: 19334 };
const TOKENS = 6;
let gw: Gateway;
let client: OpenAI;

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    deployments: [{
      model: 'talk', version: '1', runtime: 'sim', args: ['--tokens', String(TOKENS), '--ttft-ms', '1', '--token-ms', '1'],
      cost: { per_1k_input_tokens: 1, per_1k_output_tokens: 10 },
    }],
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-not-checked', maxRetries: 0 });
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

let input = 0;
let output = 0;

t.test('responses.create answers with the message text and its usage', async (t) => {
  const r = await client.responses.create({ model: 'talk', instructions: 'be brief', input: 'one two three four' });
  t.equal(r.object, 'response');
  t.equal(r.status, 'completed');
  t.equal(r.model, 'talk', 'the deployment the model name picked');
  t.equal(r.output_text, responseText(TOKENS));
  t.equal(r.usage?.input_tokens, 6, 'four input words and two of instructions');
  t.equal(r.usage?.output_tokens, TOKENS);
  input += r.usage!.input_tokens;
  output += r.usage!.output_tokens;
});

t.test('a list of input messages, and max_output_tokens: incomplete', async (t) => {
  const r = await client.responses.create({
    model: 'talk-1', max_output_tokens: 3,
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'alpha beta' }] }, { role: 'user', content: 'gamma' }],
  });
  t.equal(r.status, 'incomplete');
  t.same(r.incomplete_details, { reason: 'max_output_tokens' });
  t.equal(r.output_text, responseText(3));
  t.equal(r.usage?.input_tokens, 3);
  input += r.usage!.input_tokens;
  output += r.usage!.output_tokens;
});

t.test('streamed: the events in order, one delta per token, the usage in response.completed', async (t) => {
  const stream = await client.responses.create({ model: 'talk', input: 'stream these words please', stream: true });
  const types: string[] = [];
  let text = '';
  let sequence = -1;
  let usage: OpenAI.Responses.ResponseUsage | null | undefined;
  for await (const event of stream) {
    types.push(event.type);
    t.equal(event.sequence_number, sequence + 1, 'sequence numbers count up from 0');
    sequence = event.sequence_number;
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.completed') usage = event.response.usage;
  }
  t.same(types, [
    'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
    ...Array<string>(TOKENS).fill('response.output_text.delta'),
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed',
  ]);
  t.equal(text, responseText(TOKENS));
  t.equal(usage?.input_tokens, 4);
  t.equal(usage?.output_tokens, TOKENS);
  input += usage!.input_tokens;
  output += usage!.output_tokens;
});

t.test('the costs count the reported input and output tokens apart', async (t) => {
  const costs = (await adminClient(gw.adminUrl).get('/v1/costs')).body.deployments as { id: string; input_tokens: number; output_tokens: number; cost_usd: { input_tokens: number; output_tokens: number } }[];
  const c = costs.find((d) => d.id === 'talk-1')!;
  t.equal(c.input_tokens, input, `${input} input tokens reported by the server`);
  t.equal(c.output_tokens, output, `${output} output tokens`);
  t.ok(Math.abs(c.cost_usd.output_tokens - (output / 1000) * 10) < 1e-9, `output cost ${c.cost_usd.output_tokens}`);
});

t.test('a request without input: the OpenAI error shape', async (t) => {
  const err = await client.responses.create({ model: 'talk' } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.BadRequestError, 'a 400 the client shows as such');
  t.match((err as InstanceType<typeof OpenAI.BadRequestError>).message, /input/);
});
