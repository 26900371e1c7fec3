// The LLM gateway's metrics through the real gateway and real model-server processes (the
// simulator): GenAI time to first token, time per output token and token usage in the
// OpenTelemetry shapes, the gateway's overhead, refusals by cause, requests by status
// class, GET /v1/stats; and `promtool check metrics` (Debian's prometheus package) on the
// whole exposition.

import { spawnSync } from 'node:child_process';
import t from 'tap';
import { metricsText, sample, startGateway } from '../helpers/procs.js';

// Model-server ports 19080-19089 belong to this file (19090-19094: the bench).
const PORTS = { from: 19080, to: 19089 };
const TTFT_MS = 40;
const TOKEN_MS = 5;
const TOKENS = 10;

t.test('GenAI and gateway metrics of streamed and whole answers', async (t) => {
  const gw = await startGateway({
    ports: PORTS,
    deployments: [
      { model: 'chat', version: '1', runtime: 'sim', args: ['--tokens', String(TOKENS), '--ttft-ms', String(TTFT_MS), '--token-ms', String(TOKEN_MS)] },
      { model: 'iris', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'] },
      { model: 'limited', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 1 } } },
    ],
  });
  t.teardown(() => gw.stop());

  const chat = (stream: boolean): Promise<Response> => fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat-1', messages: [{ role: 'user', content: 'three little words' }], stream, ...(stream ? { stream_options: { include_usage: true } } : {}) }),
  });
  let promptTokens = 0;
  for (let i = 0; i < 5; i++) {
    const r = await chat(true);
    t.equal(r.status, 200);
    const text = await r.text();
    promptTokens += Number(/"prompt_tokens":(\d+)/.exec(text)![1]);
  }
  for (let i = 0; i < 3; i++) {
    const r = await chat(false);
    const body = (await r.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    t.equal(body.usage.completion_tokens, TOKENS);
    promptTokens += body.usage.prompt_tokens;
  }
  const iris = await fetch(`${gw.url}/iris-1/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [[1, 2, 3, 4]] }) });
  t.equal(iris.status, 200);
  await iris.text();
  const limited = [];
  for (let i = 0; i < 2; i++) {
    const r = await fetch(`${gw.url}/limited-1/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'x' }] }) });
    limited.push(r.status);
    await r.text();
  }
  t.same(limited, [200, 429], 'the limited deployment refused its second request');

  const text = await metricsText(gw);
  const chat1 = { deployment: 'chat-1' };
  t.equal(sample(text, 'gen_ai_server_time_to_first_token_seconds_count', chat1), 8, 'a time to first token per 2xx answer');
  t.ok(sample(text, 'gen_ai_server_time_to_first_token_seconds_sum', chat1)! >= (8 * TTFT_MS) / 1000, 'at least the server\'s time to first token');
  t.equal(sample(text, 'gen_ai_server_time_to_first_token_seconds_bucket', { ...chat1, le: '0.01' }), 0, 'none faster than the server produces it');
  t.equal(sample(text, 'gen_ai_server_time_per_output_token_seconds_count', chat1), 5, 'time per output token: the streamed answers');
  t.ok(sample(text, 'gen_ai_server_time_per_output_token_seconds_sum', chat1)! / 5 >= (TOKEN_MS * 0.8) / 1000, 'about the server\'s time between tokens, or more');
  t.equal(sample(text, 'gen_ai_client_token_usage_count', { ...chat1, gen_ai_token_type: 'output' }), 8);
  t.equal(sample(text, 'gen_ai_client_token_usage_sum', { ...chat1, gen_ai_token_type: 'output' }), 8 * TOKENS, 'output tokens as the server reported them');
  t.equal(sample(text, 'gen_ai_client_token_usage_sum', { ...chat1, gen_ai_token_type: 'input' }), promptTokens, 'input tokens as the server reported them');
  t.equal(sample(text, 'sluice_tokens_total', { ...chat1, direction: 'output' }), 8 * TOKENS);
  t.equal(sample(text, 'gen_ai_client_token_usage_count', { deployment: 'iris-1', gen_ai_token_type: 'output' }), 0, 'an MLflow prediction has no tokens');
  t.equal(sample(text, 'gen_ai_server_time_to_first_token_seconds_count', { deployment: 'iris-1' }), 1);

  const overheadCount = sample(text, 'sluice_gateway_overhead_seconds_count', chat1);
  const overheadSum = sample(text, 'sluice_gateway_overhead_seconds_sum', chat1)!;
  t.equal(overheadCount, 8, 'one observation per proxied request');
  t.ok(overheadSum >= 0 && overheadSum < (8 * TTFT_MS) / 1000, `the upstream's time is not in it (${(overheadSum / 8) * 1000} ms per request)`);
  t.equal(sample(text, 'sluice_gateway_refusals_total', { deployment: 'limited-1', code: 'SLUICE_ERR_RATE_LIMITED' }), 1, 'rate limited, by cause');
  t.equal(sample(text, 'sluice_requests_total', { deployment: 'limited-1', code: '429', class: '4xx' }), 1, 'requests by status class');
  t.equal(sample(text, 'sluice_replica_ready', chat1), 1, 'replica up');
  t.equal(sample(text, 'sluice_replica_restarts_total', chat1), 0, 'replica restarts');
  // Counts that only grow are counters, so that rate() and increase() apply to them.
  for (const name of ['sluice_replica_restarts_total', 'sluice_breaker_opens_total']) t.match(text, `# TYPE ${name} counter\n`, `${name} is a counter`);

  // promtool: the exposition format and Prometheus' naming rules (units, _total counters).
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(promtool.error, undefined, 'promtool runs (Debian package prometheus)');
  t.equal(promtool.status, 0, `promtool check metrics: ${promtool.stdout}${promtool.stderr}`);

  const stats = (await (await fetch(`${gw.adminUrl}/v1/stats`)).json()) as { at: string; deployments: Array<Record<string, any>> };
  t.ok(Date.parse(stats.at) > 0);
  const c = stats.deployments.find((d) => d.deployment === 'chat-1')!;
  t.match(c, { model: 'chat', version: '1', state: 'ready', requests: 8, errors: 0, status: { '2xx': 8, '4xx': 0, '5xx': 0 }, output_tokens: 8 * TOKENS, input_tokens: promptTokens, in_flight: 0, queued: 0 });
  t.ok(c.ttft_p50_ms >= TTFT_MS && c.ttft_p99_ms >= c.ttft_p50_ms, `TTFT quantiles (${c.ttft_p50_ms}, ${c.ttft_p99_ms} ms)`);
  t.ok(c.p99_ms >= c.p50_ms && c.p50_ms >= TTFT_MS, 'duration quantiles');
  const l = stats.deployments.find((d) => d.deployment === 'limited-1')!;
  t.match(l, { requests: 2, status: { '2xx': 1, '4xx': 1 } });
  const idle = stats.deployments.find((d) => d.deployment === 'iris-1')!;
  t.equal(idle.output_tokens, 0);
});

t.test('metrics.tokens off: tokens are counted only where cost needs them', async (t) => {
  const gw = await startGateway({
    ports: PORTS,
    metrics: { tokens: false },
    deployments: [
      { model: 'free', version: '1', runtime: 'sim', args: ['--tokens', '3', '--ttft-ms', '1'] },
      { model: 'paid', version: '1', runtime: 'sim', args: ['--tokens', '3', '--ttft-ms', '1'], cost: { per_1k_output_tokens: 1 } },
    ],
  });
  t.teardown(() => gw.stop());
  for (const id of ['free-1', 'paid-1']) {
    const r = await fetch(`${gw.url}/${id}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'x' }] }) });
    t.equal(r.status, 200);
    await r.text();
  }
  const text = await metricsText(gw);
  t.equal(sample(text, 'gen_ai_client_token_usage_count', { deployment: 'free-1', gen_ai_token_type: 'output' }), 0);
  t.equal(sample(text, 'gen_ai_client_token_usage_sum', { deployment: 'paid-1', gen_ai_token_type: 'output' }), 3);
});
