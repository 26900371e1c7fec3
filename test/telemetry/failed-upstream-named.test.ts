// A request whose last try failed before any answer (a reset, a refused connect) names the
// replica that failed it, in its access line's `upstream` and its span's server.address and
// server.port, as a request that timed out or was cut mid-answer does: the operator looking
// for the bad server finds it. Through the real gateway, with a server that resets every
// connection and a port nothing listens on, and a real OTLP/HTTP receiver.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { attrs, startReceiver, type Receiver } from '../helpers/otlp.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27740-27749 belong to this file: 27740 the resetting server, 27741 the receiver,
// 27742 a port nothing listens on.
const RESET_PORT = 27740;
const RECEIVER_PORT = 27741;
const CLOSED_PORT = 27742;

let resetting: Server;
let receiver: Receiver;
let gw: Gateway;

t.before(async () => {
  resetting = createServer((req) => req.socket.destroy());
  await new Promise<void>((resolve) => resetting.listen(RESET_PORT, '127.0.0.1', resolve));
  receiver = await startReceiver(RECEIVER_PORT);
  gw = await startGateway({
    tracing: { enabled: true, endpoint: `http://127.0.0.1:${RECEIVER_PORT}/v1/traces` },
    deployments: [
      { model: 'resets', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${RESET_PORT}`], health_check: { enabled: false } },
      { model: 'refuses', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${CLOSED_PORT}`], health_check: { enabled: false } },
    ],
  }, { OTEL_BSP_SCHEDULE_DELAY: '50' });
});

t.teardown(async () => {
  await gw?.stop();
  await receiver?.proc.stop();
  await new Promise((resolve) => resetting?.close(resolve));
});

for (const [deployment, port, code] of [['resets-1', RESET_PORT, 'SLUICE_ERR_UPSTREAM_RESET'], ['refuses-1', CLOSED_PORT, 'SLUICE_ERR_UPSTREAM_CONNECT']] as const) {
  t.test(`${code}: the replica that failed it is named`, async (t) => {
    const requestId = `named-${deployment}`;
    const r = await httpRequest(`${gw.url}/${deployment}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': requestId }, body: '{"model":"m","messages":[]}',
    });
    t.equal(r.status, 502);
    const line = await eventually(() => jsonLogs(gw).find((l) => l.request_id === requestId), 5_000, 'the access line');
    t.match(line, { status: 502, error: code, upstream: `http://127.0.0.1:${port}` });
    const span = await eventually(() => receiver.spans().find((s) => attrs(s.attributes)['sluice.request_id'] === requestId), 10_000, 'the span');
    t.match(attrs(span.attributes), { 'error.type': code, 'server.address': '127.0.0.1', 'server.port': port });
  });
}
