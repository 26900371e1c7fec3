// Cost accounting through the real gateway: a scripted run against a deployment with
// prices, and GET /v1/costs, /metrics and the access log must give the figures computed by
// hand from the usage the model server reported; replica time is charged by the hour and
// a hibernated deployment's time is what it saved.

import t from 'tap';
import { adminClient, gwRequest, reapServers, sleep, waitFor, waitState, type AdminClient } from '../helpers/control.js';
import { eventually, jsonLogs, metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 18953-18959 belong to this file.
const RANGE = { from: 18953, to: 18959 };
// Replica time at 3600 an hour is 1 a second: easy to check against a clock.
const PRICES = { per_replica_hour: 3600, per_1k_input_tokens: 0.5, per_1k_output_tokens: 1.5, per_request: 0.01 };
let gw: Gateway;
let admin: AdminClient;
let startedBefore: number;
let readyAfter: number;

t.before(async () => {
  startedBefore = Date.now();
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: true },
    deployments: [
      { model: 'paid', version: '1', runtime: 'sim', args: ['--tokens', '7', '--ttft-ms', '1', '--token-ms', '1'], cost: PRICES },
      { model: 'nap', version: '1', runtime: 'sim', cost: { per_replica_hour: 3600 }, scale: { min_replicas: 0, idle_timeout_s: 1 } },
    ],
  });
  readyAfter = Date.now();
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

interface CostView {
  id: string; running_hours: number; hibernated_hours: number; saved_by_hibernation_usd: number; predictions: number; input_tokens: number; output_tokens: number;
  cost_usd: { replica_hours: number; requests: number; input_tokens: number; output_tokens: number; total: number }; cost_per_1k_predictions_usd: number | null;
}

async function costOf(id: string): Promise<CostView> {
  return ((await admin.get('/v1/costs')).body.deployments as CostView[]).find((d) => d.id === id)!;
}

const close = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9;

t.test('requests are charged by their own usage, as computed by hand', async (t) => {
  let input = 0;
  let output = 0;
  // OpenAI chat (usage.prompt_tokens / completion_tokens) and Ollama generate (prompt_eval_count / eval_count).
  for (let i = 0; i < 6; i++) {
    const r = await gwRequest(`${gw.url}/paid-1/v1/chat/completions`, { method: 'POST', body: { model: 'demo', messages: [{ role: 'user', content: `say ${'word '.repeat(i + 1)}` }] } });
    t.equal(r.status, 200);
    input += r.json.usage.prompt_tokens;
    output += r.json.usage.completion_tokens;
  }
  for (let i = 0; i < 4; i++) {
    const r = await gwRequest(`${gw.url}/paid-1/api/generate`, { method: 'POST', body: { model: 'demo', prompt: 'one two three', stream: false } });
    t.equal(r.status, 200);
    input += r.json.prompt_eval_count;
    output += r.json.eval_count;
  }
  t.ok(input > 0 && output === 70, `the server reported ${input} input and ${output} output tokens`);
  const c = await costOf('paid-1');
  t.equal(c.predictions, 10);
  t.equal(c.input_tokens, input);
  t.equal(c.output_tokens, output);
  t.ok(close(c.cost_usd.requests, 10 * 0.01), `requests: ${c.cost_usd.requests}`);
  t.ok(close(c.cost_usd.input_tokens, (input / 1000) * 0.5), `input tokens: ${c.cost_usd.input_tokens}`);
  t.ok(close(c.cost_usd.output_tokens, (output / 1000) * 1.5), `output tokens: ${c.cost_usd.output_tokens}`);
  // One replica since it started: 1 a second.
  const now = Date.now();
  t.ok(c.cost_usd.replica_hours <= (now - startedBefore) / 1000 && c.cost_usd.replica_hours >= (now - readyAfter) / 1000 - 1, `replica time: ${c.cost_usd.replica_hours}`);
  t.ok(close(c.cost_usd.total, c.cost_usd.replica_hours + c.cost_usd.requests + c.cost_usd.input_tokens + c.cost_usd.output_tokens));
  t.ok(close(c.cost_per_1k_predictions_usd!, (c.cost_usd.total / 10) * 1000));

  const text = await metricsText(gw);
  t.match(text, new RegExp(`^sluice_tokens_total\\{deployment="paid-1",direction="input"\\} ${input}$`, 'm'));
  t.match(text, new RegExp(`^sluice_tokens_total\\{deployment="paid-1",direction="output"\\} ${output}$`, 'm'));
  const requestsUsd = Number(/^sluice_cost_usd_total\{deployment="paid-1",kind="requests"\} (\S+)$/m.exec(text)?.[1]);
  t.ok(close(requestsUsd, 0.1), 'the cost counters in /metrics');
  t.match(text, /^sluice_cost_usd_total\{deployment="paid-1",kind="replica_hours"\} \d/m);

  // An answer that reports no usage (here Ollama's model list; an MLflow prediction alike)
  // is charged its request and no tokens, as the token metrics count none for it.
  const list = await gwRequest(`${gw.url}/paid-1/api/tags`);
  t.equal(list.status, 200, list.text.slice(0, 200));
  t.notOk(/tokens|eval_count/.test(list.text), `the answer reports no usage: ${list.text.slice(0, 200)}`);
  const p = await costOf('paid-1');
  t.equal(p.predictions, 11);
  t.equal(p.output_tokens, output, 'no output tokens counted for it');
  t.ok(close(p.cost_usd.requests, 11 * 0.01), `its request is charged: ${p.cost_usd.requests}`);
  t.ok(close(p.cost_usd.input_tokens, (input / 1000) * 0.5) && close(p.cost_usd.output_tokens, (output / 1000) * 1.5), `and no tokens: ${JSON.stringify(p.cost_usd)}`);

  // Access lines are written in batches (log.access_flush_ms, 1 s by default).
  const logged = await eventually(() => {
    const lines = jsonLogs(gw).filter((l) => l.msg === 'request' && l.route === 'paid-1');
    return lines.length >= 11 ? lines : undefined;
  }, 5_000, 'the access lines of the 11 requests');
  t.equal(logged.length, 11);
  const perRequest = logged.reduce((sum, l) => sum + (l.cost_usd as number), 0);
  t.ok(close(perRequest, p.cost_usd.requests + p.cost_usd.input_tokens + p.cost_usd.output_tokens), 'the access log\'s cost_usd adds up to the same');
});

t.test('a hibernated deployment costs nothing and counts what it saved', async (t) => {
  await waitState(admin, 'nap-1', 'hibernated', 10_000);
  await waitFor(async () => ((await admin.deployment('nap-1'))!.replicas.length === 0 ? true : undefined), 10_000, 'the replica to stop');
  const at = await costOf('nap-1');
  await sleep(1_500);
  const later = await costOf('nap-1');
  t.ok(close(later.cost_usd.replica_hours, at.cost_usd.replica_hours), 'no replica time while hibernated');
  const slept = (later.hibernated_hours - at.hibernated_hours) * 3600;
  t.ok(slept >= 1.4 && slept < 3, `hibernated time grows with the clock (${slept.toFixed(2)} s over 1.5 s)`);
  t.ok(close(later.saved_by_hibernation_usd, later.hibernated_hours * 3600 * 1), 'saved: hibernated hours x per-hour price x its replicas');
  t.equal(later.cost_per_1k_predictions_usd, null, 'no prediction, no cost per prediction');
});
