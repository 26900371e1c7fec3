// The node front end's behaviour, through the real gateway (two workers) and the simulator
// as the model server, run over plain HTTP (test/proxy/front-end.test.ts) and over TLS
// (test/proxy/front-end-tls.test.ts): what a client's HTTP/1.1 stack relies on
// (keep-alive, pipelining, 100-continue, HTTP/1.0, chunked uploads), what a bad or idle
// client gets (a JSON error with a request id and a closed connection; an idle connection
// closed after listen.client_idle_timeout_ms), that both workers' SO_REUSEPORT sockets
// take connections, and that a stop closes keep-alive connections as nginx does.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import t from 'tap';
import type { Certificate } from '../../bench/lib/certificate.js';
import { connect as connectTo, httpRequest, RawConnection, rawRequest as rawRequestTo, type RequestOptions, type Reply } from './http.js';
import { jsonLogs, replicaPorts, rssBytes, simStats, sleep, startGateway, type Gateway } from './procs.js';

export interface FrontEndSuiteOptions {
  /** The gateway port's certificate (listen.tls); null: plain HTTP. */
  readonly tls: Certificate | null;
  /** The replica ports the calling test file owns. */
  readonly ports: { readonly from: number; readonly to: number };
}

/** The node front end's suite, over plain HTTP or TLS: the same behaviour is owed either way. */
export function frontEndSuite(o: FrontEndSuiteOptions): void {
  let gw: Gateway;
  let simPort: number;
  const IDLE_MS = 1500;
  const tls = o.tls !== null;
  const connect = (port: number): Socket => connectTo(port, tls);
  const rawRequest: typeof rawRequestTo = (port, head, opts = {}) => rawRequestTo(port, head, { ...opts, tls });
  const openRaw = (port: number): Promise<RawConnection> => RawConnection.open(port, tls);
  const get = (path: string, opts: RequestOptions = {}): Promise<Reply> => httpRequest(`${tls ? 'https' : 'http'}://127.0.0.1:${gw.port}${path}`, o.tls === null ? opts : { ca: readFileSync(o.tls.certFile), ...opts });

  t.before(async () => {
    gw = await startGateway({
      listen: { host: '127.0.0.1', port: 0, front_end: 'node', client_idle_timeout_ms: IDLE_MS, ...(o.tls === null ? {} : { tls: { cert_file: o.tls.certFile, key_file: o.tls.keyFile } }) },
      workers: 2,
      ports: o.ports,
      deployments: [{ model: 'demo', version: '1', runtime: 'sim', replicas: 1, args: ['--ttft-ms', '0', '--token-ms', '1', '--tokens', '5'] }],
    });
    [simPort] = (await replicaPorts(gw, 'demo-1')) as [number];
  });
  t.teardown(() => gw?.stop());

  interface Echo {
    method: string;
    url: string;
    headers: Record<string, string>;
    body_bytes: number;
  }

  const echoHead = (extra = ''): string => `GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\n${extra}\r\n`;

  t.test('keep-alive: many requests on one connection, each with its own request id', async (t) => {
    const conn = await openRaw(gw.port);
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await conn.request(echoHead());
      t.equal(r?.status, 200, `request ${i} answered`);
      ids.add(r!.headers['x-request-id']!);
      t.match(r!.headers['date'] ?? '', /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/, 'a Date header');
    }
    t.equal(ids.size, 20, 'distinct request ids');
    t.notOk(conn.closed, 'the connection stays open');
    conn.close();
  });

  t.test('pipelined requests are answered in order on the same connection', async (t) => {
    const conn = await openRaw(gw.port);
    const first = conn.request(`${echoHead('x-request-id: pipe-1\r\n')}${echoHead('x-request-id: pipe-2\r\n')}POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nx-request-id: pipe-3\r\nContent-Length: 5\r\n\r\nhello`);
    const replies = [await first, await conn.request(''), await conn.request('')];
    t.same(replies.map((r) => r?.headers['x-request-id']), ['pipe-1', 'pipe-2', 'pipe-3'], 'in the order sent');
    t.equal((JSON.parse(replies[2]!.body) as Echo).body_bytes, 5, 'the pipelined body reached the model server whole');
    t.equal(conn.unread, '', 'nothing more');
    conn.close();
  });

  t.test('Expect: 100-continue gets its interim answer before the body is sent', async (t) => {
    const socket = connect(gw.port);
    await new Promise((resolve) => socket.once('connect', resolve));
    let got = '';
    socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    socket.write('POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
    await waitFor(() => got.includes('\r\n\r\n'), 'the interim response');
    t.equal(got, 'HTTP/1.1 100 Continue\r\n\r\n', 'only the 100 so far');
    socket.write('ping');
    await waitFor(() => /\r\n\r\n\{.*\}$/s.test(got.slice(25)), 'the final response');
    t.match(got.slice(25), /^HTTP\/1\.1 200 OK\r\n/);
    t.equal((JSON.parse(got.slice(got.lastIndexOf('\r\n\r\n') + 4)) as Echo).body_bytes, 4);
    t.notOk((JSON.parse(got.slice(got.lastIndexOf('\r\n\r\n') + 4)) as Echo).headers['expect'], 'Expect stays at the gateway');
    socket.destroy();
    // Refused before the body: no 100, the refusal at once.
    const refused = await rawRequest(gw.port, 'POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 999999999999\r\nExpect: 100-continue\r\n\r\n');
    t.equal(refused.status, 413);
    t.notMatch(refused.raw, /100 Continue/, 'no interim answer for a body that will not be read');
  });

  t.test('HTTP/1.0: closed after the answer unless the client asks for keep-alive', async (t) => {
    const plain = await rawRequest(gw.port, 'GET /demo-1/_sim/echo HTTP/1.0\r\n\r\n');
    t.equal(plain.status, 200);
    t.equal(plain.headers['connection'], 'close');
    t.ok(plain.closed, 'the connection closed');
    const conn = await openRaw(gw.port);
    for (let i = 0; i < 3; i++) {
      const r = await conn.request('GET /demo-1/_sim/echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      t.equal(r?.status, 200);
      t.equal(r?.headers['connection'], 'keep-alive', 'said to a 1.0 client');
    }
    t.notOk(conn.closed);
    conn.close();
    // A streamed answer has no chunked framing for a 1.0 client: it ends with the connection.
    const stream = await rawRequest(gw.port, 'POST /demo-1/v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 62\r\n\r\n{"model":"demo","stream":true,"messages":[{"role":"user","content":"x"}]}'.replace('62', String('{"model":"demo","stream":true,"messages":[{"role":"user","content":"x"}]}'.length)));
    t.equal(stream.status, 200);
    t.notOk(stream.headers['transfer-encoding'], 'no chunked framing');
    t.match(stream.body, /data: \[DONE\]/, 'the whole stream');
    t.ok(stream.closed);
  });

  t.test('a chunked upload reaches the model server whole', async (t) => {
    const r = await rawRequest(gw.port, 'POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n');
    t.equal(r.status, 200);
    t.equal((JSON.parse(r.body) as Echo).body_bytes, 11);
  });

  t.test('malformed requests: a JSON error with a request id, the connection closed, nothing forwarded', async (t) => {
    const before = (await simStats(simPort)).requests;
    const cases: Array<[string, number, string]> = [
      ['POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'SLUICE_ERR_BAD_REQUEST'],
      ['POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 12abc\r\n\r\n', 400, 'SLUICE_ERR_BAD_REQUEST'],
      // Not chunked last: the body's length cannot be known (RFC 9112 6.3: 400).
      ['POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n', 400, 'SLUICE_ERR_BAD_REQUEST'],
      // Framed, but with a coding sluice does not decode (RFC 9112 6.1: 501).
      ['POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501, 'SLUICE_ERR_TRANSFER_CODING'],
      ['GET /demo-1/_sim/echo HTTP/2.0\r\nHost: gw\r\n\r\n', 505, 'SLUICE_ERR_HTTP_VERSION'],
      [`GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'SLUICE_ERR_HEADERS_TOO_LARGE'],
      ['GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nBad Header: x\r\n\r\n', 400, 'SLUICE_ERR_BAD_REQUEST'],
      ['GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\n folded: x\r\n\r\n', 400, 'SLUICE_ERR_BAD_REQUEST'],
    ];
    for (const [head, status, code] of cases) {
      const what = JSON.stringify(head.slice(0, 60));
      const r = await rawRequest(gw.port, head);
      t.equal(r.status, status, `${what}: ${status}`);
      const body = JSON.parse(r.body) as { error: { code: string; message: string; request_id: string } };
      t.equal(body.error.code, code, what);
      t.ok(body.error.message.length > 0, `a message: ${body.error.message}`);
      t.equal(r.headers['x-request-id'], body.error.request_id, 'the request id in the header and the body');
      t.equal(r.headers['connection'], 'close');
      t.ok(r.closed, `${what}: the connection closed`);
    }
    t.equal((await simStats(simPort)).requests, before, 'none reached the model server');
  });

  t.test('a connection idle for listen.client_idle_timeout_ms is closed; one busy is not', async (t) => {
    const idle = await openRaw(gw.port);
    t.equal((await idle.request(echoHead()))?.status, 200);
    // A slow head (slowloris): bytes trickle, the head never ends.
    const slow = connect(gw.port);
    slow.write('GET /demo-1/_sim/echo HTTP/1.1\r\n');
    const slowClosed = closedWithin(slow, IDLE_MS + 3000);
    // A request the model server answers slowly is not cut by the client's idle timeout.
    const busy = get(`/demo-1/_sim/sleep?ms=${IDLE_MS + 1500}`);
    // Closed between IDLE_MS and a sweep (1 s) later: waited for, not slept on.
    await waitFor(() => idle.closed, 'the idle keep-alive connection to close', IDLE_MS + 4000);
    t.ok(idle.closed, 'the idle keep-alive connection was closed');
    t.ok(await slowClosed, 'the never-ending head was closed');
    t.equal((await busy).status, 200, 'the slow answer arrived');
  });

  t.test('a download to a client that stalls midway arrives whole, the upstream held back meanwhile; an upload arrives exact', async (t) => {
    const MiB = 1024 * 1024;
    const total = 256 * MiB;
    const idle = rssBytes(gw.child.pid!);
    let received = 0;
    let stallRss = 0;
    const status = await new Promise<number>((resolve, reject) => {
      const send = tls ? httpsRequest : request;
      const req = send(`${tls ? 'https' : 'http'}://127.0.0.1:${gw.port}/demo-1/_sim/download?bytes=${total}`, { agent: false, rejectUnauthorized: false }, (res) => {
        let stalled = false;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (!stalled && received >= total / 4) {
            stalled = true;
            res.pause();
            setTimeout(() => {
              stallRss = rssBytes(gw.child.pid!);
              res.resume();
            }, 1000);
          }
        });
        res.on('end', () => resolve(res.statusCode!));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    t.equal(status, 200);
    t.equal(received, total, 'every byte arrived');
    // Without backpressure the gateway would have read the other 192 MiB meanwhile.
    t.ok(stallRss - idle < 96 * MiB, `RSS after a 1 s stall: +${((stallRss - idle) / MiB).toFixed(0)} MiB`);
    const upload = Buffer.alloc(16 * MiB, 'sluice');
    const r = await get('/demo-1/_sim/upload', { method: 'POST', body: upload });
    t.same(JSON.parse(r.body), { bytes: upload.length, sha256: createHash('sha256').update(upload).digest('hex') }, 'the upload reached the model server byte for byte');
  });

  t.test("both workers' sockets take connections", async (t) => {
    const N = 60;
    for (let i = 0; i < N; i++) await get('/demo-1/_sim/echo', { headers: { 'x-request-id': `spread-${i}` } });
    const entries = await waitForValue(() => {
      const lines = jsonLogs(gw).filter((l) => typeof l['request_id'] === 'string' && (l['request_id'] as string).startsWith('spread-'));
      return lines.length === N ? lines : undefined;
    }, 'an access line per request');
    const workers = new Set(entries.map((e) => e['worker']));
    t.same([...workers].sort(), [0, 1], 'both workers served');
  });

  // Last: it stops the gateway.
  t.test('stopping: an idle keep-alive connection closes at once, a busy one after its response, which says connection: close', async (t) => {
    const idle = await openRaw(gw.port);
    t.equal((await idle.request(echoHead()))?.status, 200);
    const busyConn = await openRaw(gw.port);
    let answered = false;
    const busy = busyConn.request('GET /demo-1/_sim/sleep?ms=1500 HTTP/1.1\r\nHost: gw\r\n\r\n', { timeoutMs: 10_000 }).finally(() => { answered = true; });
    await sleep(300);
    const exited = gw.stop('SIGTERM');
    await waitFor(() => idle.closed, 'the idle connection to close', 1000);
    t.notOk(answered, 'closed while the busy one still waited for its answer');
    const reply = await busy;
    t.equal(reply?.status, 200, 'the request in flight was answered');
    t.equal(reply?.headers['connection'], 'close', 'and told its client to go elsewhere');
    t.equal(await exited, 0, 'the gateway exited 0');
  });

}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  await waitForValue(() => (cond() ? true : undefined), what, timeoutMs);
}

async function waitForValue<T>(fn: () => T | undefined, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
