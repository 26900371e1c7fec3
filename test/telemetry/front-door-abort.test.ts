// A client that leaves while the gateway reads its body whole (at the front door, where the
// body's model picks the route, or on a path route whose model is renamed: served_model)
// has its access line, a 499 with the bytes read, as one that leaves a path request's
// upload; the deployment its path named counts it as a client abort. Through the real
// gateway, with a raw client that sends part of its body and closes.

import t from 'tap';
import { connect } from '../helpers/http.js';
import { eventually, jsonLogs, metricsText, sample, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27720-27729 belong to this file: the model servers.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27720, to: 27729 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', served_model: 'llama3.2:1b', args: ['--models', 'llama3.2:1b'] }],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

/** Sends the head (announcing 1000 bytes) and `partial` of the body, then closes after a moment. */
async function leaveMidUpload(path: string, requestId: string, partial: string): Promise<void> {
  const socket = connect(gw.port);
  socket.on('error', () => {});
  socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nx-request-id: ${requestId}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n${partial}`);
  await sleep(200);
  socket.destroy();
}

t.test('a client gone while its body is read has its 499 line', async (t) => {
  await leaveMidUpload('/v1/chat/completions', 'left-at-root', '{"model":"demo-1",');
  await leaveMidUpload('/demo-1/v1/chat/completions', 'left-on-path', '{"model":');

  const line = (id: string): Promise<Record<string, unknown>> => eventually(() => jsonLogs(gw).find((l) => l.request_id === id), 5_000, `the access line of ${id}`);
  t.match(await line('left-at-root'), { msg: 'request', path: '/v1/chat/completions', route: null, upstream: null, status: 499, request_bytes: 18, response_bytes: 0, error: null });
  t.match(await line('left-on-path'), { msg: 'request', path: '/demo-1/v1/chat/completions', route: 'demo-1', upstream: null, status: 499, request_bytes: 9, response_bytes: 0 });

  const text = await metricsText(gw);
  t.equal(sample(text, 'sluice_requests_total', { deployment: 'demo-1', code: '499' }), 1, 'the path route\'s deployment counts its 499');
  t.equal(sample(text, 'sluice_client_aborts_total', { deployment: 'demo-1' }), 1);
});
