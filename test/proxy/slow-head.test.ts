// listen.client_header_timeout_ms: a request head must arrive whole within it from its
// first byte. A slowloris client, drip-feeding a header line before each idle timeout, is
// answered 408 with a JSON error and closed (it held a socket and a head buffer for as long
// as it liked); a head that arrives in time, and a keep-alive connection idle between
// requests, are not concerned. An upload that stops arriving for client_idle_timeout_ms is
// answered 408 too (nginx's client_body_timeout), not cut without a word and logged as the
// client's own leaving (499).

import t from 'tap';
import { openWatched, type WatchedConnection } from '../helpers/http.js';
import { eventually, jsonLogs, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Every port of this file: 19380 (gateway), 19381 (admin), 19382-19385 (replicas).
const HEAD_MS = 2000;
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19380, front_end: 'node', client_idle_timeout_ms: 5000, client_header_timeout_ms: HEAD_MS },
    admin: { host: '127.0.0.1', port: 19381 },
    ports: { from: 19382, to: 19385 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '1', '--tokens', '3'] }],
  });
});
t.teardown(() => gw?.stop());

type Connection = WatchedConnection;
const open = (): Promise<Connection> => openWatched(gw.port);

t.test('a head drip-fed a line every 400 ms is answered 408 after client_header_timeout_ms, and closed', async (t) => {
  const conn = await open();
  const started = performance.now();
  conn.socket.write('GET /demo-1/api/tags HTTP/1.1\r\nHost: x\r\n');
  // Each line well inside the 5 s idle timeout: only the head's own deadline can end this.
  for (let i = 0; i < 20 && conn.closedAt() === null; i++) {
    await sleep(400);
    conn.socket.write(`X-Drip-${i}: a\r\n`);
  }
  t.not(conn.closedAt(), null, 'the connection was closed');
  const ms = conn.closedAt()! - started;
  // The front end sweeps once a second: between 2 and 3 s, and a loaded machine may add some.
  t.ok(ms >= HEAD_MS - 50 && ms < HEAD_MS + 3_000, `after ~${HEAD_MS} ms (${Math.round(ms)} ms)`);
  const [head, body] = conn.got().split('\r\n\r\n') as [string, string];
  t.match(head, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  const error = (JSON.parse(body) as { error: { code: string; message: string; request_id: string } }).error;
  t.equal(error.code, 'SLUICE_ERR_REQUEST_TIMEOUT');
  t.match(error.message, /2000 ms/);
  t.match(head, new RegExp(`x-request-id: ${error.request_id}`, 'i'), 'with its request id');
  await eventually(() => jsonLogs(gw).some((l) => l['status'] === 408 && l['error'] === 'SLUICE_ERR_REQUEST_TIMEOUT') || undefined, 3_000, 'the access line');
  t.pass('and an access line');
});

t.test('a head that takes less than the limit, and a keep-alive connection idle longer than it, are served', async (t) => {
  const conn = await open();
  conn.socket.write('GET /demo-1/api/tags HTTP/1.1\r\nHost: x\r\n');
  await sleep(1_200);
  conn.socket.write('\r\n');
  for (let i = 0; i < 100 && !conn.got().includes('\r\n\r\n'); i++) await sleep(20);
  t.match(conn.got(), /^HTTP\/1\.1 200 /, 'a head whole after 1.2 s is served');
  // Idle 3 s between requests: the idle timeout (5 s) governs that wait, not the head's.
  await sleep(3_000);
  const before = conn.got().length;
  conn.socket.write('GET /demo-1/api/tags HTTP/1.1\r\nHost: x\r\n\r\n');
  for (let i = 0; i < 100 && !conn.got().slice(before).includes('\r\n\r\n'); i++) await sleep(20);
  t.match(conn.got().slice(before), /^HTTP\/1\.1 200 /, 'the next request on the connection is served');
  t.equal(conn.closedAt(), null, 'and the connection stays open');
  conn.socket.destroy();
});

t.test('an upload that stops arriving for client_idle_timeout_ms is answered 408 and logged with its code', async (t) => {
  const stall = async (path: string): Promise<{ conn: Connection; ms: number }> => {
    const conn = await open();
    const started = performance.now();
    conn.socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":"demo-1",`);
    for (let i = 0; i < 500 && conn.closedAt() === null; i++) await sleep(20);
    return { conn, ms: (conn.closedAt() ?? performance.now()) - started };
  };
  // At the root the body is read whole before routing; on a path route it streams to the model server.
  const [root, path] = await Promise.all([stall('/v1/chat/completions'), stall('/demo-1/_sim/upload')]);
  for (const [what, { conn, ms }] of [['at the root', root], ['on a path route', path]] as const) {
    t.not(conn.closedAt(), null, `${what}: closed`);
    t.ok(ms >= 5_000 - 50 && ms < 5_000 + 3_000, `${what}: after the 5 s idle timeout (${Math.round(ms)} ms)`);
    const [head, body] = conn.got().split('\r\n\r\n') as [string, string];
    t.match(head, /^HTTP\/1\.1 408 Request Timeout\r\n/, `${what}: answered 408`);
    t.match(JSON.parse(body), { error: { code: 'SLUICE_ERR_REQUEST_TIMEOUT', message: /body stopped arriving.*5000 ms/ } });
  }
  const lines = await eventually(() => {
    const found = jsonLogs(gw).filter((l) => l['status'] === 408 && l['method'] === 'POST');
    return found.length >= 2 ? found : undefined;
  }, 3_000, 'the access lines');
  t.same(lines.map((l) => [l['path'], l['error']]).sort(), [['/demo-1/_sim/upload', 'SLUICE_ERR_REQUEST_TIMEOUT'], ['/v1/chat/completions', 'SLUICE_ERR_REQUEST_TIMEOUT']], 'not 499, the client\'s leaving');
});
