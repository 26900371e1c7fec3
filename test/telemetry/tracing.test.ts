// OpenTelemetry traces, received by a real OTLP/HTTP receiver that decodes the protobuf
// with the official bindings (test/fixtures/otlp_receiver.py, PyPI opentelemetry-proto):
// a span per request through the real gateway, GenAI attributes from real responses (the
// openai SDK at the front door), the parent chain client -> gateway -> model server (the
// simulator's echo shows the traceparent it got), a retry, a cache hit, a cold start, the
// config file and the OTEL_* variables, sampling at ratio 0, and the flush on shutdown.

import OpenAI from 'openai';
import t from 'tap';
import { adminClient, waitFor, waitState } from '../helpers/control.js';
import { httpRequest, json } from '../helpers/http.js';
import { attrs, clientParent, plain, startReceiver, type Receiver, type ReceivedSpan } from '../helpers/otlp.js';
import { spawnCli, startGateway, waitForLine, type Gateway, type Proc } from '../helpers/procs.js';

// Ports 19040-19059 belong to this file: 19040-19041 the receivers, 19042 a port nothing
// listens on (a refused connect), 19043 a simulator the test runs itself, 19044-19051 and
// 19052-19059 the model servers of the two gateways; and 19100-19109: the collector that is
// down then up (19100) and the third gateway's model servers.
const RECEIVER_PORT = 19040;
const RECEIVER2_PORT = 19041;
const CLOSED_PORT = 19042;
const SIM_PORT = 19043;

let receiver: Receiver;
let receiver2: Receiver;
let sim: Proc;
let gw: Gateway;
let stopped = false;

t.before(async () => {
  receiver = await startReceiver(RECEIVER_PORT);
  receiver2 = await startReceiver(RECEIVER2_PORT);
  sim = spawnCli(['sim', '--port', String(SIM_PORT), '--protocol', 'openai', '--ttft-ms', '0', '--token-ms', '0']);
  await waitForLine(sim, (l) => l.includes('"listening"'));
  gw = await startGateway({
    ports: { from: 19044, to: 19051 },
    tracing: { enabled: true, endpoint: `http://127.0.0.1:${RECEIVER_PORT}/v1/traces`, headers: { 'x-collector-token': 'tok-123' } },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--token-ms', '0', '--ttft-ms', '0', '--tokens', '50'] },
      // A refused connect, then the simulator: the first request that lands on the closed port is retried.
      {
        model: 'flaky', version: '1', runtime: 'remote', health_check: { enabled: false },
        urls: [`http://127.0.0.1:${CLOSED_PORT}`, `http://127.0.0.1:${SIM_PORT}`],
        policies: { balancer: { strategy: 'round_robin' }, breaker: { enabled: false } },
      },
      // Answers 503: demo-1 takes its requests.
      { model: 'busy', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--status', '503'], fallbacks: ['demo-1'] },
    ],
  }, {
    OTEL_SERVICE_NAME: 'sluice-traced',
    // OTEL_SERVICE_NAME wins over the resource attributes' service.name.
    OTEL_RESOURCE_ATTRIBUTES: 'service.name=not-this-one,deployment.environment=ci',
    // Nothing is exported before the gateway stops: every span the test reads came with the shutdown's flush.
    OTEL_BSP_SCHEDULE_DELAY: '600000',
  });
});

t.teardown(async () => {
  if (!stopped) await gw?.stop();
  await sim?.stop();
  await receiver?.proc.stop();
  await receiver2?.proc.stop();
});

const MESSAGES = [{ role: 'user' as const, content: 'hi' }];
const NO_CACHE = { 'x-sluice-cache': 'off' };

t.test('traced requests, their spans read after the gateway stopped', async (t) => {
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-not-checked', maxRetries: 0 });

  // 1. The front door, non-streamed, under a client's span.
  const chatParent = clientParent();
  const chat = await openai.chat.completions.create({ model: 'demo-1', messages: MESSAGES, max_tokens: 3 }, { headers: { traceparent: chatParent.header, ...NO_CACHE } });
  t.equal(chat.choices[0]?.finish_reason, 'length');

  // 2. Streamed, through the alias.
  const stream = await openai.chat.completions.create(
    { model: 'demo', messages: MESSAGES, max_tokens: 4, stream: true, stream_options: { include_usage: true } }, { headers: NO_CACHE },
  );
  for await (const _chunk of stream);

  // 3. The model server sees the gateway's span as its parent, and the client's tracestate.
  const echoParent = clientParent();
  const echo = await httpRequest(`${gw.url}/demo-1/_sim/echo`, { method: 'GET', headers: { traceparent: echoParent.header, tracestate: 'vendor=abc' } });
  t.equal(echo.status, 200);
  const upstreamHeaders = json(echo).headers as Record<string, string | string[]>;

  // 4. Retries: round robin sends one of two requests to the closed port first.
  for (let i = 0; i < 2; i++) {
    const r = await httpRequest(`${gw.url}/flaky-1/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...NO_CACHE }, body: JSON.stringify({ model: 'demo', messages: MESSAGES, max_tokens: 2 }),
    });
    t.equal(r.status, 200, 'retried on the replica that answers');
  }

  // 5. A fallback: busy-1 answers 503, demo-1 serves the request.
  const diverted = await openai.chat.completions.create({ model: 'busy-1', messages: MESSAGES, max_tokens: 2 }, { headers: NO_CACHE }).withResponse();
  t.equal(diverted.response.headers.get('x-sluice-served-by'), 'demo-1');

  // 6. A cache hit: the same request twice.
  for (let i = 0; i < 2; i++) {
    await openai.chat.completions.create({ model: 'demo-1', messages: [{ role: 'user', content: 'cached' }], max_tokens: 2 }, { headers: { 'x-sluice-cache': 'on' } });
  }

  // 7. A cold start: a deployment whose server listens after 1.5 s, asked at once.
  const admin = adminClient(gw.adminUrl);
  const created = await admin.post('/v1/deployments', { model: 'cold', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--start-delay-ms', '1500', '--ttft-ms', '0', '--token-ms', '0'] });
  t.equal(created.status, 201, created.text);
  const cold = await httpRequest(`${gw.url}/cold-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...NO_CACHE }, body: JSON.stringify({ model: 'cold', messages: MESSAGES, max_tokens: 2 }),
  });
  t.equal(cold.status, 200, 'held until its server listened');
  await waitState(admin, 'cold-1', 'ready');

  // 8. At the root, an Ollama-style name:tag picks demo-1: the span keeps the client's spelling.
  await openai.chat.completions.create({ model: 'demo:1', messages: MESSAGES, max_tokens: 2 }, { headers: NO_CACHE });

  // 9. Refused before any deployment took them: a path no route serves, under a client's span,
  // and a model the front door does not know.
  const lostParent = clientParent();
  t.equal((await httpRequest(`${gw.url}/nowhere/v1/chat/completions`, { method: 'GET', headers: { traceparent: lostParent.header } })).status, 404);
  const unknown = await openai.chat.completions.create({ model: 'no-such-model', messages: MESSAGES }, { headers: NO_CACHE }).then(() => null, (e: { status?: number }) => e);
  t.equal(unknown?.status, 404);

  t.same(receiver.spans(), [], 'nothing exported yet (OTEL_BSP_SCHEDULE_DELAY is long)');
  const code = await gw.stop();
  stopped = true;
  t.equal(code, 0, 'the gateway stopped cleanly');
  const spans = receiver.spans();
  const byRequest = (pred: (s: ReceivedSpan, a: Record<string, unknown>) => boolean): ReceivedSpan[] => spans.filter((s) => pred(s, attrs(s.attributes)));

  t.test('every span came with the shutdown flush, from the configured service, with the configured export headers', async (t) => {
    t.ok(spans.length >= 9, `${spans.length} spans`);
    for (const s of spans) {
      t.equal(plain(s.resource['service.name']), 'sluice-traced', 'OTEL_SERVICE_NAME');
      t.equal(plain(s.resource['deployment.environment']), 'ci', 'OTEL_RESOURCE_ATTRIBUTES');
      t.equal(s.exportHeaders['x-collector-token'], 'tok-123', 'tracing.headers go with each export');
    }
  });

  t.test('the front door: a server span named by the GenAI conventions, a child of the client\'s span', async (t) => {
    const [span] = spans.filter((s) => s.traceIdHex === chatParent.traceId);
    t.ok(span, 'the chat request\'s span, in the client\'s trace');
    if (span === undefined) return;
    t.equal(span.name, 'chat demo-1');
    t.equal(span.kind, 'SPAN_KIND_SERVER');
    t.equal(span.parentSpanIdHex, chatParent.spanId, 'parent: the client\'s span');
    const a = attrs(span.attributes);
    t.match(a, {
      'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'demo-1', 'gen_ai.response.model': chat.model,
      'gen_ai.usage.input_tokens': chat.usage!.prompt_tokens, 'gen_ai.usage.output_tokens': chat.usage!.completion_tokens,
      'gen_ai.response.finish_reasons': ['length'], 'http.response.status_code': 200, 'sluice.deployment': 'demo-1',
      'server.address': '127.0.0.1', 'url.path': '/v1/chat/completions', 'http.request.method': 'POST',
    });
    t.ok(Number(a['server.port']) >= 19044 && Number(a['server.port']) <= 19051, 'server.port: the replica that answered');
    t.equal(a['error.type'], undefined, 'no error');
  });

  t.test('a streamed request through the alias: the finish reason and usage from the last SSE chunks', async (t) => {
    const [span] = byRequest((_s, a) => a['gen_ai.request.model'] === 'demo');
    t.ok(span);
    if (span === undefined) return;
    t.equal(span.name, 'chat demo', 'the alias is the requested model');
    t.match(attrs(span.attributes), { 'gen_ai.response.finish_reasons': ['length'], 'gen_ai.usage.output_tokens': 4, 'sluice.deployment': 'demo-1' });
    t.equal(span.parentSpanIdHex, '', 'no traceparent from the client: a root span');
  });

  t.test('gen_ai.request.model is the model the client named, as it spelt it', async (t) => {
    const [span] = byRequest((_s, a) => a['gen_ai.request.model'] === 'demo:1');
    t.ok(span, 'the name:tag request\'s span');
    if (span === undefined) return;
    t.equal(span.name, 'chat demo:1');
    t.equal(attrs(span.attributes)['sluice.deployment'], 'demo-1', 'served by the deployment the name resolved to');
  });

  t.test('requests the gateway refused before routing have spans too, with the refusal as error.type', async (t) => {
    const [lost] = spans.filter((s) => s.traceIdHex === lostParent.traceId);
    t.ok(lost, 'the unrouted request\'s span, in the client\'s trace');
    if (lost !== undefined) {
      t.equal(lost.name, 'GET', 'no route: named by the method alone');
      t.equal(lost.parentSpanIdHex, lostParent.spanId);
      t.match(attrs(lost.attributes), { 'http.response.status_code': 404, 'error.type': 'SLUICE_ERR_NO_ROUTE', 'url.path': '/nowhere/v1/chat/completions' });
    }
    const [unknownModel] = byRequest((_s, a) => a['error.type'] === 'SLUICE_ERR_MODEL_NOT_FOUND');
    t.ok(unknownModel, 'the unknown model\'s span');
    if (unknownModel !== undefined) t.match(attrs(unknownModel.attributes), { 'http.request.method': 'POST', 'url.path': '/v1/chat/completions', 'http.response.status_code': 404 });
  });

  t.test('the model server got the gateway\'s span as its parent', async (t) => {
    const [span] = spans.filter((s) => s.traceIdHex === echoParent.traceId);
    t.ok(span);
    if (span === undefined) return;
    t.equal(span.name, 'GET /_sim/echo', 'not a GenAI endpoint: HTTP\'s {method} {route}');
    t.equal(span.parentSpanIdHex, echoParent.spanId);
    t.equal(upstreamHeaders.traceparent, `00-${echoParent.traceId}-${span.spanIdHex}-01`, 'one traceparent upstream, the gateway\'s span its parent');
    t.equal(upstreamHeaders.tracestate, 'vendor=abc', 'the client\'s tracestate passed on');
  });

  t.test('a retry is an event of the request\'s span', async (t) => {
    const flaky = byRequest((_s, a) => a['sluice.deployment'] === 'flaky-1');
    t.equal(flaky.length, 2, 'one span per request, not per attempt');
    const retried = flaky.filter((s) => (s.events ?? []).some((e) => e.name === 'sluice.retry'));
    t.ok(retried.length >= 1, 'a request that met the closed port was retried');
    const event = retried[0]?.events?.find((e) => e.name === 'sluice.retry');
    t.match(attrs(event?.attributes), { 'error.type': 'SLUICE_ERR_UPSTREAM_CONNECT', 'server.address': '127.0.0.1', 'server.port': CLOSED_PORT, 'sluice.attempt': 1 });
    t.match(attrs(retried[0]?.attributes), { 'server.port': SIM_PORT, 'http.response.status_code': 200 }, 'answered by the simulator');
  });

  t.test('a fallback is an event of the request\'s span', async (t) => {
    const [span] = byRequest((_s, a) => a['gen_ai.request.model'] === 'busy-1');
    t.ok(span);
    if (span === undefined) return;
    t.equal(span.name, 'chat busy-1');
    t.match(attrs(span.attributes), { 'sluice.deployment': 'demo-1', 'http.response.status_code': 200 }, 'served by the fallback');
    const event = span.events?.find((e) => e.name === 'sluice.fallback');
    t.match(attrs(event?.attributes), { 'sluice.fallback.from': 'busy-1', 'sluice.fallback.to': 'demo-1', 'http.response.status_code': 503 });
  });

  t.test('a cache hit is recorded', async (t) => {
    const cached = byRequest((_s, a) => a['sluice.cache'] !== undefined && a['gen_ai.request.model'] === 'demo-1' && a['url.path'] === '/v1/chat/completions');
    t.same(cached.map((s) => attrs(s.attributes)['sluice.cache']).sort(), ['hit', 'miss']);
    const hit = cached.find((s) => attrs(s.attributes)['sluice.cache'] === 'hit');
    t.ok(hit?.events?.some((e) => e.name === 'sluice.cache.hit'), 'with an event');
    t.match(attrs(hit?.attributes), { 'gen_ai.usage.output_tokens': 2, 'gen_ai.response.finish_reasons': ['length'] }, 'its GenAI attributes from the cached response');
  });

  t.test('a request held for a cold start has a child span for the wait', async (t) => {
    const [span] = byRequest((_s, a) => a['sluice.deployment'] === 'cold-1');
    t.ok(span);
    if (span === undefined) return;
    const [wait] = spans.filter((s) => s.parentSpanIdHex === span.spanIdHex);
    t.equal(wait?.name, 'sluice.cold_start');
    t.equal(wait?.traceIdHex, span.traceIdHex);
    t.equal(wait?.kind, 'SPAN_KIND_INTERNAL');
  });
});

t.test('OTEL_* variables alone, sampling ratio 0: only a sampled client\'s trace is recorded', async (t) => {
  const gw2 = await startGateway({
    ports: { from: 19052, to: 19059 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--token-ms', '0', '--ttft-ms', '0'] }],
  }, {
    OTEL_SDK_DISABLED: 'false',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${RECEIVER2_PORT}`,
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=ci,service.name=sluice%20resource',
  });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await httpRequest(`${gw2.url}/demo-1/_sim/echo`, { method: 'GET' });
      const upstream = json(r).headers as Record<string, string>;
      t.match(upstream.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'the upstream still gets a traceparent, not sampled');
    }
    const parent = clientParent();
    const r = await httpRequest(`${gw2.url}/demo-1/_sim/echo`, { method: 'GET', headers: { traceparent: parent.header } });
    t.equal(r.status, 200);
    const spans = await waitFor(() => {
      const s = receiver2.spans();
      return s.length > 0 ? s : undefined;
    }, 10_000, 'the sampled span');
    t.equal(spans.length, 1, 'only the request whose parent was sampled');
    t.equal(spans[0]?.traceIdHex, parent.traceId, 'parent-based: the client\'s decision is followed');
    t.equal(plain(spans[0]?.resource['service.name']), 'sluice resource', 'without OTEL_SERVICE_NAME, the service.name of OTEL_RESOURCE_ATTRIBUTES (not the config\'s default)');
  } finally {
    t.equal(await gw2.stop(), 0);
  }
  t.equal(receiver2.spans().length, 1, 'nothing more came with the shutdown flush');
});

t.test('a collector that is down: the export breaker opens, requests are served, and it closes when the collector is back', async (t) => {
  const COLLECTOR_PORT = 19100;
  const metric = async (g: Gateway): Promise<number | undefined> => {
    const text = await (await fetch(`${g.adminUrl}/metrics`)).text();
    const m = /^sluice_dependency_breaker_state\{dependency="otlp",use="export"\} (\d+)$/m.exec(text);
    return m === null ? undefined : Number(m[1]);
  };
  const gw3 = await startGateway({
    ports: { from: 19101, to: 19109 },
    tracing: { enabled: true, endpoint: `http://127.0.0.1:${COLLECTOR_PORT}/v1/traces` },
    dependencies: { otlp: { export: { volume_threshold: 2, reset_timeout_ms: 500 } } },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--token-ms', '0', '--ttft-ms', '0'] }],
  }, { OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_EXPORTER_OTLP_TIMEOUT: '300' });
  let collector: Receiver | undefined;
  try {
    t.equal(await metric(gw3), 0, 'closed before any export');
    const send = async (): Promise<void> => {
      const r = await httpRequest(`${gw3.url}/demo-1/_sim/echo`, { method: 'GET' });
      t.equal(r.status, 200, 'answered whatever the collector does');
    };
    await waitFor(async () => {
      await send();
      return (await metric(gw3)) === 1 ? true : undefined;
    }, 20_000, 'the otlp export breaker to open');
    t.pass('open (1, as sluice_breaker_state) after failed exports');
    collector = await startReceiver(COLLECTOR_PORT);
    const parent = clientParent();
    await waitFor(async () => {
      await httpRequest(`${gw3.url}/demo-1/_sim/echo`, { method: 'GET', headers: { traceparent: parent.header } });
      return (await metric(gw3)) === 0 && collector!.spans().some((s) => s.traceIdHex === parent.traceId) ? true : undefined;
    }, 20_000, 'the breaker to close and spans to arrive');
    t.pass('closed again, and the spans reach the collector');
  } finally {
    t.equal(await gw3.stop(), 0);
    await collector?.proc.stop();
  }
  // Workers' log lines are buffered: read once the gateway has stopped.
  const said = gw3.lines.filter((l) => l.includes('"dependency":"otlp"'));
  t.ok(said.some((l) => /circuit breaker open/.test(l)) && said.some((l) => /circuit breaker closed/.test(l)), `the outage said once each way, the dependency named: ${said.join('\n')}`);
});
