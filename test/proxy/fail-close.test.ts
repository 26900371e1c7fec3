// A response cut by the gateway after it started (the upstream reset mid-body of a
// length-framed answer) ends its exchange once: one request counted, with its status, and
// the replica's in-flight count back to 0 (the abort that closing the client reports is not
// a second end, nor a client abort).

import t from 'tap';
import { createServer, type Server } from 'node:net';
import { httpRequest, metric } from '../helpers/http.js';
import { metricsText, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// This file's upstream listens on 19291; the gateway spawns nothing (remote deployment).
let gw: Gateway;
let upstream: Server;

t.before(async () => {
  // Half of a 100-byte body, then the connection drops.
  upstream = createServer((s) => {
    s.once('data', () => {
      s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n${'x'.repeat(50)}`);
      setTimeout(() => s.destroy(), 100);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(19291, '127.0.0.1', () => resolve()));
  gw = await startGateway({
    ports: { from: 19292, to: 19294 },
    log: { level: 'info', access: false },
    deployments: [{ model: 'cut', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: ['http://127.0.0.1:19291'], policies: { retry: { attempts: 0 }, cache: { enabled: false } } }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  upstream?.close();
});

t.test('an upstream reset mid-body ends the exchange once', async (t) => {
  const r = await httpRequest(`${gw.url}/cut-1/x`, { method: 'POST', body: '{}' });
  t.equal(r.status, 200);
  t.equal(r.complete, false, 'the client sees a cut body, not a whole one');
  await sleep(200);
  const m = await metricsText(gw);
  t.equal(metric(m, 'sluice_requests_total', { deployment: 'cut-1' }), 1, 'one request counted');
  t.equal(metric(m, 'sluice_requests_total', { deployment: 'cut-1', code: '200' }), 1, 'with the status it was answered with');
  t.equal(metric(m, 'sluice_client_aborts_total', { deployment: 'cut-1' }), 0, 'not a client abort');
  t.equal(metric(m, 'sluice_replica_inflight', { deployment: 'cut-1' }), 0, 'the in-flight slot given back once');
  t.equal(metric(m, 'sluice_upstream_errors_total', { deployment: 'cut-1', code: 'SLUICE_ERR_UPSTREAM_RESET' }), 1);
});
