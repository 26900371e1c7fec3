// GET /v1/costs (and `sluice costs`) for a deployment without prices: its predictions are
// the requests its replicas answered, as for a priced one. They said 0 beside the tokens of
// those very answers, since only a priced answer was counted.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 19590-19599 belong to this file: 19590 the gateway, 19591 its admin API, 19592-19599
// the simulators.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19590 },
    admin: { host: '127.0.0.1', port: 19591 },
    ports: { from: 19592, to: 19599 },
    workers: 2,
    log: { level: 'info', access: false },
    deployments: [
      { model: 'free', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '4'] },
      { model: 'paid', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '4'], cost: { per_request: 0.5 } },
    ],
  });
});
t.teardown(() => gw?.stop());

interface CostRow { id: string; predictions: number; output_tokens: number; cost_per_1k_predictions_usd: number | null }

t.test('a deployment without prices counts its predictions', async (t) => {
  for (const model of ['free-1', 'paid-1']) {
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }), headers: { 'content-type': 'application/json' } });
      t.equal(r.status, 200);
    }
  }
  const costs = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/costs`)).body) as { deployments: CostRow[] };
  const row = (id: string): CostRow => costs.deployments.find((d) => d.id === id)!;
  t.match(row('free-1'), { predictions: 3, output_tokens: 12, cost_per_1k_predictions_usd: 0 }, 'three predictions, their tokens, nothing charged');
  t.match(row('paid-1'), { predictions: 3, output_tokens: 12, cost_per_1k_predictions_usd: 500 }, 'as a priced deployment counts them');
});
