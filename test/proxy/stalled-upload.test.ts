// listen.client_idle_timeout_ms on a request whose body stops arriving: the gateway, not the
// client, ends it. It is answered 408 SLUICE_ERR_REQUEST_TIMEOUT (as a head that stalls past
// client_header_timeout_ms) and closed, the upstream request it had started ends, and the
// access line says so: not 499 with no error, as if the client had left. An idle
// keep-alive connection still closes without a word.

import t from 'tap';
import { httpRequest, metric, openWatched, type WatchedConnection } from '../helpers/http.js';
import { eventually, jsonLogs, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Every port of this file: 21910 (gateway), 21911 (admin), 21912-21915 (replicas).
const IDLE_MS = 1000;
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 21910, front_end: 'node', client_idle_timeout_ms: IDLE_MS },
    admin: { host: '127.0.0.1', port: 21911 },
    ports: { from: 21912, to: 21915 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '1', '--tokens', '3'] }],
  });
});
t.teardown(() => gw?.stop());

type Connection = WatchedConnection;
const open = (): Promise<Connection> => openWatched(gw.port);

async function closed(conn: Connection): Promise<number> {
  return eventually(() => conn.closedAt() ?? undefined, IDLE_MS + 5_000, 'the gateway closes the connection');
}

for (const [where, path] of [['a path route (body streamed upstream)', '/demo-1/v1/chat/completions'], ['the front door (body read to route)', '/v1/chat/completions']] as const) {
  t.test(`${where}: a body that stalls is answered 408 and closed, and logged so`, async (t) => {
    const conn = await open();
    const started = performance.now();
    const part = '{"model":"demo-1","stream":true,';
    conn.socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n${part}`);
    const ms = (await closed(conn)) - started;
    // The front end sweeps once a second; a loaded machine may add some.
    t.ok(ms >= IDLE_MS - 50 && ms < IDLE_MS + 4_000, `after ~${IDLE_MS} ms (${Math.round(ms)} ms)`);
    const [head, body] = conn.got().split('\r\n\r\n') as [string, string];
    t.match(head, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    const error = (JSON.parse(body) as { error: { code: string; message: string; request_id: string } }).error;
    t.equal(error.code, 'SLUICE_ERR_REQUEST_TIMEOUT');
    t.match(error.message, /the request body stopped arriving/);
    const line = await eventually(() => jsonLogs(gw).find((l) => l.msg === 'request' && l.request_id === error.request_id), 3_000, 'the access line');
    t.match(line, { status: 408, error: 'SLUICE_ERR_REQUEST_TIMEOUT', request_bytes: part.length });
    // The request it had started upstream is over: nothing in flight on the replica.
    await eventually(async () => metric((await httpRequest(`${gw.adminUrl}/metrics`)).body, 'sluice_replica_inflight', { deployment: 'demo-1', replica: 'demo-1/0' }) === 0 || undefined, 3_000, 'no request in flight');
    t.pass('nothing left in flight');
  });
}

t.test('an idle keep-alive connection closes without an answer', async (t) => {
  const conn = await open();
  conn.socket.write('GET /demo-1/api/tags HTTP/1.1\r\nHost: x\r\n\r\n');
  for (let i = 0; i < 100 && !conn.got().includes('\r\n\r\n'); i++) await sleep(20);
  const served = conn.got();
  t.match(served, /^HTTP\/1\.1 200 /);
  await closed(conn);
  t.equal(conn.got(), served, 'nothing more was written before the close');
});
