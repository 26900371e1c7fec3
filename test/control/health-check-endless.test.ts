// A health check wants a complete 200 within timeout_ms. A server that answers 200 with a
// body framed by the connection's end (no Content-Length, not chunked) and never ends it
// has given no complete answer; Node's parser still marks such a body complete when the
// deadline closes the connection, so a hung replica passed its check at the deadline and
// was routed.
// Ports: the gateway and its admin API on port 0; 26292 the hung upstream.

import { createServer, type Socket } from 'node:net';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

const UPSTREAM_PORT = 26292;

t.test('a 200 whose close-delimited body never ends fails the check', async (t) => {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nstill coming');
      const more = setInterval(() => socket.write('.'), 50);
      socket.on('close', () => {
        clearInterval(more);
        sockets.delete(socket);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const gw = await startGateway({ deployments: [] });
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);

  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'hung', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
    health_check: { path: '/health', interval_ms: 200, timeout_ms: 300, unhealthy_threshold: 2 },
  });
  t.equal(r.status, 502, `no replica passed: ${r.text.slice(0, 300)}`);
  t.match(r.body, { error: { code: 'SLUICE_ERR_DEPLOY_FAILED', message: /no complete answer to GET \/health within 300 ms/ } });
  const view = await admin.deployment('hung-1');
  t.equal(view?.state, 'unhealthy', 'the deployment is unhealthy');
  t.equal((await fetch(`${gw.url}/hung-1/x`)).status, 503, 'and not routed');
});
