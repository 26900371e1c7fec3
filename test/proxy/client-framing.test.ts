// The node front end's client connections at their edges, through the real gateway and
// the simulator: listen.client_idle_timeout_ms at its minimum (a client that keeps sending
// is never cut, one that goes silent is); a chunked body that breaks its framing (answered
// 400 like a bad head, not dropped as a client that left).

import { connect, type Socket } from 'node:net';
import t from 'tap';
import { rawRequest } from '../helpers/http.js';
import { eventually, jsonLogs, replicaPorts, simStats, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Every port of this file: 19400 (gateway), 19401 (admin), 19402-19405 (replicas).
const IDLE_MS = 1000;
let gw: Gateway;
let simPort: number;

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19400, front_end: 'node', client_idle_timeout_ms: IDLE_MS },
    admin: { host: '127.0.0.1', port: 19401 },
    ports: { from: 19402, to: 19405 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '1', '--tokens', '5'] }],
  });
  [simPort] = (await replicaPorts(gw, 'demo-1')) as [number];
});
t.teardown(() => gw?.stop());

/** A connection that gathers what the gateway sends, and whether it closed. */
interface Connection {
  socket: Socket;
  got: () => string;
  closed: () => boolean;
}

async function open(): Promise<Connection> {
  const socket = connect({ host: '127.0.0.1', port: gw.port });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let got = '';
  let closed = false;
  socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
  socket.on('error', () => {});
  socket.on('close', () => { closed = true; });
  return { socket, got: () => got, closed: () => closed };
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Writes `text` a byte every 100 ms, while the connection is open. */
async function trickle(conn: Connection, text: string): Promise<void> {
  for (let i = 0; i < text.length && !conn.closed(); i++) {
    conn.socket.write(text[i]!);
    await sleep(100);
  }
}

const answered = (conn: Connection): boolean => /\r\n\r\n\{.*\}$/s.test(conn.got());

t.test('client_idle_timeout_ms: 1000 cuts no client that keeps sending, and closes one gone silent', async (t) => {
  const before = (await simStats(simPort)).requests;
  // An upload and a head, a byte every 100 ms for 3 s and more: three sweeps of the timeout.
  const upload = await open();
  upload.socket.write('POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 30\r\n\r\n');
  const head = await open();
  await Promise.all([trickle(upload, 'x'.repeat(30)), trickle(head, 'GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\n\r\n')]);
  await until(() => (upload.closed() || answered(upload)) && (head.closed() || answered(head)), 'both answers');
  t.match(upload.got(), /^HTTP\/1\.1 200 OK\r\n/, 'the upload was answered, not cut while it kept sending');
  t.match(upload.got(), /"body_bytes":30/, 'its whole body reached the model server');
  t.match(head.got(), /^HTTP\/1\.1 200 OK\r\n/, 'the head sent a byte at a time was answered, not cut');
  t.equal((await simStats(simPort)).requests, before + 2, 'both reached the model server');
  // Silent now, both are closed within the timeout and the sweep's second.
  await until(() => upload.closed() && head.closed(), 'the silent connections to close', IDLE_MS + 4000);
  t.pass('closed once silent');
});

t.test('a chunked body that breaks its framing is answered 400 (and logged so), not dropped as a client that left', async (t) => {
  const chat = '{"model":"demo-1","messages":[{"role":"user","content":"hi"}]}';
  const cases: Array<[string, string, string]> = [
    // On a path route the head has gone upstream already; at the root the body is read first.
    ['bad-path', '/demo-1/_sim/echo', '3\r\nabcXX\r\n0\r\n\r\n'],
    ['bad-root', '/v1/chat/completions', `${chat.length.toString(16)}\r\n${chat}\r\nzz\r\n`],
    ['bad-trailer', '/demo-1/_sim/echo', '3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n'],
  ];
  for (const [id, path, body] of cases) {
    const r = await rawRequest(gw.port, `POST ${path} HTTP/1.1\r\nHost: gw\r\nx-request-id: ${id}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
    t.equal(r.status, 400, `${id}: 400`);
    const error = (JSON.parse(r.body) as { error: { code: string; message: string; request_id: string } }).error;
    t.equal(error.code, 'SLUICE_ERR_BAD_REQUEST', `${id}: ${error.message}`);
    t.equal(error.request_id, id);
    t.equal(r.headers['connection'], 'close', `${id}: what follows cannot be framed`);
    t.ok(r.closed, `${id}: the connection closed`);
  }
  const lines = await eventually(() => {
    const found = jsonLogs(gw).filter((l) => cases.some(([id]) => l['request_id'] === id));
    return found.length === cases.length ? found : undefined;
  }, 5_000, 'an access line per request');
  for (const line of lines) t.match(line, { status: 400, error: 'SLUICE_ERR_BAD_REQUEST' }, `${String(line['request_id'])}: logged as the 400 it was`);
});

t.test('a method in lower case is refused naming it as sent, not as the GET it is not', async (t) => {
  const r = await rawRequest(gw.port, 'get /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nx-request-id: lower\r\n\r\n');
  t.equal(r.status, 405);
  const error = (JSON.parse(r.body) as { error: { code: string; message: string } }).error;
  t.equal(error.code, 'SLUICE_ERR_METHOD_NOT_ALLOWED');
  t.equal(error.message, 'method get is not supported', 'methods are case-sensitive (RFC 9110 9.1)');
  const line = await eventually(() => jsonLogs(gw).find((l) => l['request_id'] === 'lower'), 5_000, 'its access line');
  t.equal(line['method'], 'get', 'logged as sent');
});
