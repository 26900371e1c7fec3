// A request at the front door is routed once its whole body has come (the body's `model`
// picks the deployment); its times still count from its arrival, as a path request's do:
// a prompt uploaded slowly shows in its access line, the duration, time-to-first-byte,
// TTFT and gateway-overhead histograms, and its span. Through the real gateway, with a
// client that sends its body in two pieces 600 ms apart.

import { request } from 'node:http';
import t from 'tap';
import { attrs, startReceiver, type Receiver } from '../helpers/otlp.js';
import { eventually, jsonLogs, metricsText, sample, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27710-27719 belong to this file: 27710 the receiver, 27711-27719 the model servers.
const RECEIVER_PORT = 27710;
const UPLOAD_PAUSE_MS = 600;

let receiver: Receiver;
let gw: Gateway;

t.before(async () => {
  receiver = await startReceiver(RECEIVER_PORT);
  gw = await startGateway({
    ports: { from: 27711, to: 27719 },
    tracing: { enabled: true, endpoint: `http://127.0.0.1:${RECEIVER_PORT}/v1/traces` },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'] }],
  }, { OTEL_BSP_SCHEDULE_DELAY: '50' });
});

t.teardown(async () => {
  await gw?.stop();
  await receiver?.proc.stop();
});

/** POSTs `body` in two pieces, UPLOAD_PAUSE_MS apart; resolves with the status once the answer has ended. */
function slowUpload(path: string, requestId: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}${path}`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-request-id': requestId },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.write(body.slice(0, 10));
    void sleep(UPLOAD_PAUSE_MS).then(() => req.end(body.slice(10)));
  });
}

t.test('a slow upload at the front door counts from the request\'s arrival', async (t) => {
  const status = await slowUpload('/v1/chat/completions', 'slow-upload', JSON.stringify({ model: 'demo-1', messages: [{ role: 'user', content: 'hi' }] }));
  t.equal(status, 200);
  const least = (UPLOAD_PAUSE_MS - 50) / 1000;

  const line = await eventually(() => jsonLogs(gw).find((l) => l.request_id === 'slow-upload'), 5_000, 'the access line');
  t.ok(Number(line.duration_ms) >= least * 1000, `duration_ms ${String(line.duration_ms)}`);
  t.ok(Number(line.ttfb_ms) >= least * 1000, `ttfb_ms ${String(line.ttfb_ms)}`);

  // The only request of the deployment: each histogram's sum is its figure.
  const text = await metricsText(gw);
  const demo = { deployment: 'demo-1' };
  for (const name of ['sluice_request_duration_seconds_sum', 'sluice_upstream_ttfb_seconds_sum', 'gen_ai_server_time_to_first_token_seconds_sum', 'sluice_gateway_overhead_seconds_sum']) {
    const v = sample(text, name, demo);
    t.ok(v !== undefined && v >= least, `${name} ${String(v)}`);
  }

  const span = await eventually(() => receiver.spans().find((s) => attrs(s.attributes)['sluice.request_id'] === 'slow-upload'), 10_000, 'the span');
  const ms = Number(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1e6;
  t.ok(ms >= least * 1000, `the span lasts ${ms} ms`);
});
