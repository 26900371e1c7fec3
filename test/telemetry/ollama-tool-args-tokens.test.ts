// The tokens of an answer of Ollama's own API are its counts (`prompt_eval_count`,
// `eval_count`, on its final line), nothing else in it. A tool call's arguments there are a
// JSON object, not a string as in OpenAI's API: a tool with a parameter named as OpenAI's
// usage (`total_tokens`, `input_tokens`) or as Ollama's counts was charged as usage, a
// hundred thousand input tokens for a call whose prompt had ten.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { gwMetric } from '../helpers/policy.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const PROMPT = 10;
const OUTPUT = 5;
/** What the model put in its tool call: numbers under the keys the counter reads. */
const ARGUMENTS = { total_tokens: 100_000, input_tokens: 100_000, output_tokens: 100_000, prompt_tokens: 100_000, eval_count: 100_000, prompt_eval_count: 100_000 };
const MESSAGE = { role: 'assistant', content: '', tool_calls: [{ function: { name: 'set_budget', arguments: ARGUMENTS } }] };
const COUNTS = { done_reason: 'stop', done: true, total_duration: 900, prompt_eval_count: PROMPT, prompt_eval_duration: 100, eval_count: OUTPUT, eval_duration: 800 };

// No fixed port: the gateway's are ephemeral, the model server is this process's (port 0), and its deployment is remote.
let gw: Gateway;
let server: Server;

t.before(async () => {
  // Ollama's /api/chat: one object, or (streamed) the tool call on a line of its own and again
  // on the last, before its counts (a model with a builtin tool parser sends it on the done line).
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const streamed = (JSON.parse(body) as { stream?: boolean }).stream !== false;
      res.writeHead(200, { 'content-type': streamed ? 'application/x-ndjson' : 'application/json; charset=utf-8' });
      const head = { model: 'tool:1', created_at: '2026-01-01T00:00:00Z' };
      if (!streamed) {
        res.end(JSON.stringify({ ...head, message: MESSAGE, ...COUNTS }));
        return;
      }
      res.write(`${JSON.stringify({ ...head, message: MESSAGE, done: false })}\n`);
      res.end(`${JSON.stringify({ ...head, message: MESSAGE, ...COUNTS })}\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gw = await startGateway({
    log: { level: 'info', access: false },
    deployments: [{
      model: 'tool', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`],
      health_check: { enabled: false }, cost: { per_1k_input_tokens: 1000, per_1k_output_tokens: 1000 },
    }],
  });
});
t.teardown(async () => {
  await gw?.stop();
  server?.close();
});

async function tokens(): Promise<{ input: number; output: number }> {
  const d = { deployment: 'tool-1' };
  return {
    input: await gwMetric(gw, 'sluice_tokens_total', { ...d, direction: 'input' }),
    output: await gwMetric(gw, 'sluice_tokens_total', { ...d, direction: 'output' }),
  };
}

for (const [name, path, stream] of [
  ['at the root', '/api/chat', false],
  ['streamed, at the root', '/api/chat', true],
  ['streamed, on the path route', '/tool-1/api/chat', true],
] as const) {
  t.test(`a tool call's arguments are no usage: ${name}`, async (t) => {
    const before = await tokens();
    const r = await httpRequest(`${gw.url}${path}`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tool:1', stream, messages: [{ role: 'user', content: 'set it' }], tools: [{ type: 'function', function: { name: 'set_budget' } }] }),
    });
    t.equal(r.status, 200);
    t.match(r.body, /"total_tokens":100000/, 'the arguments reached the client');
    t.same(await tokens(), { input: before.input + PROMPT, output: before.output + OUTPUT }, 'the counts of the final line, and only them');
  });
}

t.test('the cost is of those tokens', async (t) => {
  const costs = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/costs`)).body) as { deployments: Array<{ id: string; input_tokens: number; output_tokens: number; cost_usd: { total: number } }> };
  const tool = costs.deployments.find((d) => d.id === 'tool-1')!;
  t.match(tool, { input_tokens: 3 * PROMPT, output_tokens: 3 * OUTPUT });
  t.equal(tool.cost_usd.total, 3 * (PROMPT + OUTPUT), 'a dollar a token');
});
