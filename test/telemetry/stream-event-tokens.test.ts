// A stream whose server reports no usage is charged one output token per event (README
// "Cost"): an SSE `data:` line, an NDJSON line. Its comments (`: keep-alive`), `event:`,
// `id:` and `retry:` lines and OpenAI's `data: [DONE]` carry no token: counted as lines,
// four tokens of text cost 14, three and a half times their price.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { gwMetric } from '../helpers/policy.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// No fixed port: the gateway's are ephemeral, the model server is this process's (port 0), and its deployment is remote.
let gw: Gateway;
let server: Server;

t.before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': keep-alive\n\nretry: 3000\n\n');
      for (let i = 0; i < 4; i++) res.write(`id: ${i}\nevent: delta\ndata: {"choices":[{"delta":{"content":"t${i}"}}]}\n\n`);
      res.end(': ping\n\ndata: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gw = await startGateway({
    log: { level: 'info', access: false },
    deployments: [{
      model: 'ev', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`],
      health_check: { enabled: false }, cost: { per_1k_output_tokens: 1000 },
    }],
  });
});
t.teardown(async () => {
  await gw?.stop();
  server?.close();
});

t.test('four events, four tokens: not the stream\'s comments, event and id lines, nor [DONE]', async (t) => {
  for (let i = 0; i < 2; i++) {
    const r = await httpRequest(`${gw.url}/ev-1/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"ev","stream":true,"messages":[]}' });
    t.equal(r.status, 200);
    t.match(r.body, /data: \[DONE\]/, 'the stream reached the client whole');
  }
  t.equal(await gwMetric(gw, 'sluice_tokens_total', { deployment: 'ev-1', direction: 'output' }), 8);
  const costs = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/costs`)).body) as { deployments: Array<{ id: string; output_tokens: number; cost_usd: { output_tokens: number } }> };
  const ev = costs.deployments.find((d) => d.id === 'ev-1')!;
  t.equal(ev.output_tokens, 8);
  t.equal(ev.cost_usd.output_tokens, 8, '1 per output token');
});
