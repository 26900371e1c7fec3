// A client's Trace Context headers are honoured whatever case their names are written in
// (RFC 9110: field names are case-insensitive; Go's net/http, and so OpenTelemetry-Go, sends
// `Traceparent`): the gateway's span continues the client's trace, and the model server gets
// one traceparent, the gateway's, not the client's beside it. Through the real gateway, its
// spans read by a real OTLP/HTTP receiver, the upstream's headers by the simulator's echo.

import t from 'tap';
import { httpRequest, json } from '../helpers/http.js';
import { attrs, clientParent, startReceiver, type Receiver } from '../helpers/otlp.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27700-27709 belong to this file: 27700 the receiver, 27701-27709 the model servers.
const RECEIVER_PORT = 27700;

let receiver: Receiver;
let gw: Gateway;

t.before(async () => {
  receiver = await startReceiver(RECEIVER_PORT);
  gw = await startGateway({
    ports: { from: 27701, to: 27709 },
    tracing: { enabled: true, endpoint: `http://127.0.0.1:${RECEIVER_PORT}/v1/traces` },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai'] }],
  }, { OTEL_BSP_SCHEDULE_DELAY: '50' });
});

t.teardown(async () => {
  await gw?.stop();
  await receiver?.proc.stop();
});

for (const [parentName, stateName] of [['traceparent', 'tracestate'], ['Traceparent', 'Tracestate'], ['TRACEPARENT', 'TRACESTATE']] as const) {
  t.test(`${parentName}: the client's trace goes on, the upstream gets the gateway's span alone`, async (t) => {
    const parent = clientParent();
    const requestId = `case-${parentName}`;
    const echo = await httpRequest(`${gw.url}/demo-1/_sim/echo`, { headers: { [parentName]: parent.header, [stateName]: 'vendor=abc', 'x-request-id': requestId } });
    t.equal(echo.status, 200);
    const upstream = json(echo).headers as Record<string, string>;
    t.match(upstream.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, `one traceparent upstream: ${upstream.traceparent}`);
    t.equal(upstream.tracestate, 'vendor=abc', 'the client\'s tracestate, once');
    const span = await eventually(() => receiver.spans().find((s) => attrs(s.attributes)['sluice.request_id'] === requestId), 10_000, `the span of ${requestId}`);
    t.equal(span.traceIdHex, parent.traceId, 'the client\'s trace');
    t.equal(span.parentSpanIdHex, parent.spanId, 'the client\'s span as parent');
    t.equal(span.traceState, 'vendor=abc');
    t.equal(upstream.traceparent, `00-${parent.traceId}-${span.spanIdHex}-01`, 'the model server\'s parent is the gateway\'s span');
  });
}
