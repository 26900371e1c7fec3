// The tokens of an embedding, through the real gateway and the simulator: Ollama's
// /api/embed reports its prompt's tokens alone (`prompt_eval_count`, no `eval_count`), as
// OpenAI's /v1/embeddings does (`usage.prompt_tokens`, `total_tokens`). Both count as input
// tokens (metrics, GET /v1/stats, the cost), and neither generated any: the /api/embed
// answer was counted as no usage at all, so its input tokens were never charged.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { metricsText, sample, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 19580-19589 belong to this file: 19580 the gateway, 19581 its admin API, 19582-19589
// the simulators.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19580 },
    admin: { host: '127.0.0.1', port: 19581 },
    ports: { from: 19582, to: 19589 },
    log: { level: 'info', access: false },
    deployments: [
      // The simulator speaks Ollama's API and its OpenAI compat layer; a dollar per input token.
      { model: 'emb', version: '1', runtime: 'sim', cost: { per_1k_input_tokens: 1000 } },
    ],
  });
});
t.teardown(() => gw?.stop());

async function post(path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await httpRequest(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as Record<string, unknown>;
}

t.test('an Ollama embedding counts its prompt tokens as input and generates none', async (t) => {
  const ollama = await post('/api/embed', { model: 'emb:1', input: 'three little words' });
  const prompt = ollama['prompt_eval_count'] as number;
  t.ok(prompt > 0, 'the server reports the prompt\'s tokens');
  t.equal(ollama['eval_count'], undefined, 'and nothing generated');
  const text = await metricsText(gw);
  const d = { deployment: 'emb-1' };
  t.equal(sample(text, 'sluice_tokens_total', { ...d, direction: 'input' }), prompt, 'the input tokens are counted');
  t.equal(sample(text, 'sluice_tokens_total', { ...d, direction: 'output' }), 0, 'no output token');
  t.equal(sample(text, 'gen_ai_client_token_usage_sum', { ...d, gen_ai_token_type: 'input' }), prompt);
  t.equal(sample(text, 'sluice_cost_usd_total', { ...d, kind: 'input_tokens' }), prompt, 'and charged');
});

t.test('the same through OpenAI\'s /v1/embeddings', async (t) => {
  const before = await metricsText(gw);
  const d = { deployment: 'emb-1' };
  const input = sample(before, 'sluice_tokens_total', { ...d, direction: 'input' })!;
  const openai = await post('/v1/embeddings', { model: 'emb-1', input: 'three little words' });
  const prompt = (openai['usage'] as { prompt_tokens: number }).prompt_tokens;
  const text = await metricsText(gw);
  t.equal(sample(text, 'sluice_tokens_total', { ...d, direction: 'input' }), input + prompt, 'its input tokens are counted');
  t.equal(sample(text, 'sluice_tokens_total', { ...d, direction: 'output' }), 0, 'no output token');
  const stats = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/stats`)).body) as { deployments: Array<{ deployment: string; input_tokens: number; output_tokens: number }> };
  t.match(stats.deployments.find((s) => s.deployment === 'emb-1'), { input_tokens: input + prompt, output_tokens: 0 }, 'GET /v1/stats says the same');
});
