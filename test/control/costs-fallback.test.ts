// A request a fallback answered is charged to the fallback (README, Cost), by its tokens
// too. With `metrics: { tokens: false }`, tokens are counted only for deployments whose
// prices or limits need them, and the addressed deployment, priced at nothing, counted
// none: the fallback's token prices were not charged for what it served in its place
// (GET /v1/costs and /metrics showed only the requests addressed to it).

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { metricsText, sample, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 22935-22939 belong to this file.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 22935, to: 22939 },
    metrics: { tokens: false },
    deployments: [
      // 1 input and 10 output tokens per answer, as its usage says.
      { model: 'paid', version: '1', runtime: 'sim', args: ['--tokens', '10', '--ttft-ms', '1', '--token-ms', '1'], cost: { per_1k_input_tokens: 2, per_1k_output_tokens: 1 } },
      // Unpriced, and answers 503 to every generation: paid-1 serves its requests.
      { model: 'free', version: '1', runtime: 'sim', args: ['--status', '503'], fallbacks: ['paid-1'] },
    ],
  });
});
t.teardown(() => gw?.stop());

function chat(model: string): ReturnType<typeof httpRequest> {
  return httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
    headers: { 'content-type': 'application/json' },
  });
}

interface CostView { id: string; predictions: number; input_tokens: number; output_tokens: number; cost_usd: { input_tokens: number; output_tokens: number; total: number } }

t.test('the fallback\'s token prices are charged for the requests it served for another deployment', async (t) => {
  for (const model of ['free-1', 'free-1', 'paid-1']) {
    const r = await chat(model);
    t.equal(r.status, 200, `${model}: answered`);
    t.equal(r.headers['x-sluice-served-by'], model === 'free-1' ? 'paid-1' : undefined, `${model}: by paid-1`);
  }
  const costs = (await (await fetch(`${gw.adminUrl}/v1/costs`)).json()) as { deployments: CostView[] };
  const paid = costs.deployments.find((d) => d.id === 'paid-1')!;
  t.equal(paid.predictions, 3, 'three answers');
  t.equal(paid.input_tokens, 3, 'their input tokens');
  t.equal(paid.output_tokens, 30, 'their output tokens');
  t.ok(Math.abs(paid.cost_usd.total - (3 * 2 + 30 * 1) / 1000) < 1e-9, `cost ${paid.cost_usd.total}: 3 x 2/1k + 30 x 1/1k`);
  const text = await metricsText(gw);
  t.equal(sample(text, 'sluice_tokens_total', { deployment: 'paid-1', direction: 'output' }), 30, 'sluice_tokens_total');
  t.equal(sample(text, 'sluice_tokens_total', { deployment: 'free-1', direction: 'output' }), 0, 'none for the deployment that served nothing');
});
