// An undeployed deployment's cost stays in GET /v1/costs (under `removed`), with the
// requests it served up to its last, a stream that finished during its drain included, and
// its replica time frozen at its stop; a redeploy of the same id starts from zero beside it.
// Two workers, each counting its own requests. `sluice costs` lists it too.

import t from 'tap';
import { adminClient, gwRequest, reapServers, waitFor, waitState } from '../helpers/control.js';
import { runCli } from '../helpers/cli.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 22510-22519 belong to this file.
const RANGE = { from: 22510, to: 22519 };
const PRICES = { per_replica_hour: 3600, per_1k_input_tokens: 0.5, per_1k_output_tokens: 1.5, per_request: 0.01 };
const SPEC = { model: 'spent', version: '1', runtime: 'sim', args: ['--tokens', '20', '--ttft-ms', '1', '--token-ms', '40'], cost: PRICES };

interface CostFigures {
  id: string; predictions: number; input_tokens: number; output_tokens: number; running_hours: number;
  cost_usd: { replica_hours: number; requests: number; input_tokens: number; output_tokens: number; total: number };
}
interface Removed extends CostFigures { model: string; version: string; removed_at: string }
interface Costs { deployments: CostFigures[]; removed: Removed[]; removed_dropped: number }

const close = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9;

t.test('an undeployed deployment keeps its final cost, the stream it drained included', async (t) => {
  const gw = await startGateway({ workers: 2, ports: RANGE, deployments: [{ model: 'stays', version: '1', runtime: 'sim' }] });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  const costs = async (): Promise<Costs> => (await admin.get('/v1/costs')).body as Costs;

  t.equal((await admin.post('/v1/deployments', SPEC)).status, 201, 'deployed');
  await waitState(admin, 'spent-1', 'ready');
  let input = 0;
  let output = 0;
  // One connection each (gwRequest), so that both workers serve some.
  for (let i = 0; i < 6; i++) {
    const r = await gwRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: { model: 'spent-1', messages: [{ role: 'user', content: `hi ${'x '.repeat(i)}` }] } });
    t.equal(r.status, 200);
    input += r.json.usage.prompt_tokens;
    output += r.json.usage.completion_tokens;
  }
  // A stream of 20 tokens 40 ms apart, undeployed under it: it ends during the drain.
  const stream = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'spent-1', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'go on' }] }),
  });
  t.equal(stream.status, 200, 'the stream began');
  const reader = stream.body!.getReader();
  await reader.read();
  const undeploy = admin.del('/v1/deployments/spent-1');
  let text = '';
  const decoder = new TextDecoder();
  for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true });
  t.match(text, /data: \[DONE\]/, 'the stream ended whole during the drain');
  const usage = JSON.parse(text.split('\n').filter((l) => l.startsWith('data: {') && l.includes('"usage":{')).at(-1)!.slice(6)).usage;
  input += usage.prompt_tokens;
  output += usage.completion_tokens;
  t.ok((await undeploy).status < 300, 'undeployed');
  await waitFor(async () => (await admin.deployment('spent-1')) === null, 30_000, 'spent-1 to be gone');

  const after = await costs();
  t.notOk(after.deployments.some((d) => d.id === 'spent-1'), 'no longer a live deployment');
  t.equal(after.removed.length, 1, 'one undeployed deployment');
  const gone = after.removed[0]!;
  t.match(gone, { id: 'spent-1', model: 'spent', version: '1' });
  t.ok(Math.abs(Date.parse(gone.removed_at) - Date.now()) < 30_000, `removed_at ${gone.removed_at}`);
  t.equal(gone.predictions, 7, 'six answers and the drained stream');
  t.equal(gone.input_tokens, input, 'input tokens, as the server reported them');
  t.equal(gone.output_tokens, output, 'output tokens, the drained stream\'s included');
  t.ok(close(gone.cost_usd.requests, 7 * 0.01), `requests: ${gone.cost_usd.requests}`);
  t.ok(close(gone.cost_usd.output_tokens, (output / 1000) * 1.5), `output tokens: ${gone.cost_usd.output_tokens}`);
  t.ok(gone.cost_usd.replica_hours > 0.5, `replica time charged: ${gone.cost_usd.replica_hours}`);
  await new Promise((r) => setTimeout(r, 1_200));
  t.same((await costs()).removed[0], gone, 'its figures are final: no replica time runs on');

  t.equal((await admin.post('/v1/deployments', SPEC)).status, 201, 'deployed again under the same id');
  await waitState(admin, 'spent-1', 'ready');
  t.equal((await gwRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: { model: 'spent-1', messages: [{ role: 'user', content: 'hi' }] } })).status, 200);
  const again = await costs();
  t.equal(again.deployments.find((d) => d.id === 'spent-1')?.predictions, 1, 'the new one starts from zero');
  t.same(again.removed, [gone], 'beside the old one, kept as it was');
  t.equal(again.removed_dropped, 0);

  const cli = await runCli(['costs'], { SLUICE_ADMIN_URL: gw.adminUrl });
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, new RegExp(`spent-1\\s+.*undeployed ${gone.removed_at.slice(0, 10)}`), 'sluice costs lists the undeployed one');
});
