// Header hygiene through the gateway, observed at the model server (the simulator's
// /_sim/echo reports exactly what it received): hop-by-hop headers stop at the gateway,
// Host is the replica's, X-Forwarded-* tell the upstream who asked, the request id is
// shared end to end, the path and query arrive byte for byte.

import { createServer, type Server, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest, RawConnection, rawRequest } from '../helpers/http.js';
import { deployments, replicaPorts, startGateway, startSim, type Gateway } from '../helpers/procs.js';

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  body_bytes: number;
}

// Replica ports 18440-18449 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;
let simPort: number;
let upstream: Server;
const upstreamSockets = new Set<Socket>();
/** The upstream connections that answered /repeat-* requests. */
const repeatSockets = new Set<Socket>();
/** The head of the last /raw-head request the upstream received, as bytes. */
let rawHead = '';

t.before(async () => {
  // An upstream that answers with hop-by-hop response headers of its own.
  upstream = createServer((s) => {
    upstreamSockets.add(s);
    s.on('close', () => upstreamSockets.delete(s));
    s.on('data', (d: Buffer) => {
      const line = d.toString('latin1').split('\r\n')[0]!;
      const repeat = /^GET \/repeat-(a|b|sse|sse-cut) /.exec(line);
      if (repeat !== null) {
        repeatSockets.add(s);
        // Heads that repeat byte for byte on one connection, which the gateway recognises.
        const v = repeat[1]!;
        if (v === 'a' || v === 'b') s.write(`HTTP/1.1 200 OK\r\nX-Variant: ${v}\r\nContent-Type: text/${v === 'a' ? 'plain' : 'csv'}\r\nContent-Length: 3\r\n\r\n${v}${v}${v}`);
        else {
          s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
          if (v === 'sse') s.write('d\r\ndata: token\n\n\r\n0\r\n\r\n');
          else s.end('d\r\ndata: token\n\n\r\n');
        }
        return;
      }
      if (line.includes(' /raw-head ')) {
        rawHead = d.toString('latin1');
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      } else if (line.includes(' /no-content ')) s.write('HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n');
      else if (line.includes(' /not-modified ')) s.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n');
      else if (line.startsWith('HEAD ')) s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n');
      else if (line.includes(' /obs-text ')) s.write(Buffer.from('HTTP/1.1 200 OK\r\nX-Obs-Text: caf\u00e9 \u00ff\r\nContent-Length: 2\r\n\r\nok', 'latin1'));
      else if (line.includes(' /all-hops')) {
        // Every hop-by-hop response header at once, a chunked body in two pieces and a
        // trailer. /all-hops-named also names a header in Connection, which sends the head
        // down the gateway's string path; /all-hops keeps it on the byte-copy path.
        const named = line.includes(' /all-hops-named ');
        s.write(`HTTP/1.1 200 OK\r\nConnection: ${named ? 'keep-alive, X-Named-Hop' : 'keep-alive'}\r\nX-Named-Hop: secret\r\n` +
          'Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Foo\r\nUpgrade: h2c, websocket\r\n' +
          'Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\nX-End-To-End: kept\r\nX-Sluice-Cache: hit\r\n\r\n5\r\nhello\r\n');
        setTimeout(() => s.write('6\r\n world\r\n0\r\nX-Foo: bar\r\n\r\n'), 50);
      } else {
        s.write('HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Upstream-Hop\r\nX-Upstream-Hop: secret\r\nKeep-Alive: timeout=5\r\n' +
          'Proxy-Authenticate: Basic\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nX-End-To-End: kept\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  const upstreamPort = await new Promise<number>((r) => upstream.listen(0, '127.0.0.1', () => r((upstream.address() as { port: number }).port)));
  gw = await startGateway({
    // Foreign Hosts below: the gateway's own DNS-rebinding guard is off here (proxy/host-guard tests it).
    listen: { host: '127.0.0.1', port: 0, forwarded_for: true, allowed_hosts: ['*'] },
    ports: { from: 18440, to: 18449 },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim' },
      { model: 'llama-3', version: '8b', runtime: 'sim' },
      { model: 'hops', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${upstreamPort}`] },
    ],
  });
  [simPort] = await replicaPorts(gw, 'demo-1') as [number];
});
t.teardown(async () => {
  await gw?.stop();
  for (const s of upstreamSockets) s.destroy();
  upstream?.close();
});

function echoOf(r: { body: string }): Echo {
  return JSON.parse(r.body) as Echo;
}

t.test('hop-by-hop request headers do not reach the upstream', async (t) => {
  const r = await rawRequest(gw.port,
    'GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw.example\r\n' +
    'Connection: keep-alive, X-Custom-Hop, X-Other-Hop\r\nX-Custom-Hop: secret\r\nX-Other-Hop: secret2\r\n' +
    'Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n' +
    'Proxy-Authorization: Basic dXNlcjpwYXNz\r\nProxy-Connection: keep-alive\r\n' +
    'X-End-To-End: kept\r\nAuthorization: Bearer token-for-the-model\r\n\r\n');
  t.equal(r.status, 200);
  const got = echoOf(r).headers;
  for (const name of ['connection', 'x-custom-hop', 'x-other-hop', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection']) {
    t.notOk(name in got, `${name} was not forwarded`);
  }
  t.equal(got['x-end-to-end'], 'kept', 'an end-to-end header is forwarded');
  t.equal(got.authorization, 'Bearer token-for-the-model', 'Authorization (end-to-end) is forwarded');
});

t.test('end-to-end request header lines reach the upstream as the client sent them, hop-by-hop ones in between removed', async (t) => {
  const r = await rawRequest(gw.port,
    'GET /hops-1/raw-head HTTP/1.1\r\nHost: gw.example\r\nX-Mixed-Case: One\r\nx-lower:  spaced value \r\n' +
    'Connection: X-Hop\r\nX-Hop: secret\r\nAccept: */*\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nX-Last: caf\u00e9\r\n\r\n');
  t.equal(r.status, 200);
  const lines = rawHead.split('\r\n');
  t.equal(lines[0], 'GET /raw-head HTTP/1.1', 'the request line, rewritten');
  for (const kept of ['X-Mixed-Case: One', 'x-lower:  spaced value ', 'Accept: */*', 'X-Last: caf\u00e9']) {
    t.ok(lines.includes(kept), `${JSON.stringify(kept)} arrives as sent`);
  }
  t.notOk(/^(connection|x-hop|proxy-authorization):/im.test(rawHead), 'no hop-by-hop line');
  t.equal(lines.filter((l) => /^host:/i.test(l)).length, 1, 'one Host line, the gateway\'s');
  t.ok(rawHead.endsWith('\r\n\r\n'), 'the head ends once');
});

t.test('hop-by-hop response headers do not reach the client; exactly one Date', async (t) => {
  const r = await rawRequest(gw.port, 'GET /hops-1/x HTTP/1.1\r\nHost: gw\r\n\r\n');
  t.equal(r.status, 200);
  t.equal(r.body, 'ok');
  t.equal(r.headers['x-end-to-end'], 'kept');
  t.notOk('x-upstream-hop' in r.headers, 'a header named in the upstream Connection header is dropped');
  t.notOk('keep-alive' in r.headers, 'Keep-Alive is dropped');
  t.notOk('proxy-authenticate' in r.headers, 'Proxy-Authenticate is dropped');
  t.equal(r.raw.split('\r\n\r\n')[0]!.split('\r\n').filter((l) => /^date:/i.test(l)).length, 1, 'exactly one Date header');
  t.not(r.headers.date, 'Mon, 01 Jan 2001 00:00:00 GMT', "the gateway's Date, not the upstream's");
});

/** The data of a chunked body, and what follows its last chunk (trailer fields, if any). */
function dechunk(raw: string): { data: string; trailer: string } | null {
  let data = '';
  let at = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    if (eol === -1) return null;
    const size = parseInt(raw.slice(at, eol), 16);
    if (Number.isNaN(size)) return null;
    at = eol + 2;
    if (size === 0) return { data, trailer: raw.slice(at) };
    data += raw.slice(at, at + size);
    at += size + 2;
  }
}

t.test('hop-by-hop response headers of a chunked upstream answer: only the gateway framing reaches the client', async (t) => {
  for (const path of ['/all-hops', '/all-hops-named']) {
    const r = await rawRequest(gw.port, `GET /hops-1${path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`, { timeoutMs: 3_000 });
    t.equal(r.status, 200, `${path}: status`);
    const head = r.raw.slice(0, r.raw.indexOf('\r\n\r\n'));
    for (const name of ['keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
      t.notOk(name in r.headers, `${path}: the upstream's ${name} is dropped`);
    }
    t.notMatch(head, /h2c|trailers|timeout=5|max=100|x-foo/i, `${path}: no upstream hop-by-hop value anywhere in the head`);
    // The client sees framing, but the gateway's own: one Transfer-Encoding: chunked, no
    // Content-Length, and a Connection header only as the gateway's answer to `close`.
    t.equal(head.split('\r\n').filter((l) => /^transfer-encoding:/i.test(l)).length, 1, `${path}: one Transfer-Encoding line`);
    t.equal(r.headers['transfer-encoding'], 'chunked', `${path}: the gateway's own chunked framing`);
    t.notOk('content-length' in r.headers, `${path}: no Content-Length with chunked framing`);
    t.ok(r.headers.connection === undefined || r.headers.connection.toLowerCase() === 'close', `${path}: Connection is the gateway's (${r.headers.connection})`);
    t.equal(r.headers['x-end-to-end'], 'kept', `${path}: an end-to-end header is kept`);
    t.equal(r.headers['content-type'], 'text/plain', `${path}: Content-Type is kept`);
    t.same(head.split('\r\n').filter((l) => /^x-sluice-cache:/i.test(l)), ['x-sluice-cache: bypass'], `${path}: one x-sluice-cache, the gateway's, not the upstream's`);
    if (path === '/all-hops-named') t.notOk('x-named-hop' in r.headers, `${path}: a header the upstream named in Connection is dropped`);
    else t.equal(r.headers['x-named-hop'], 'secret', `${path}: the same header not named in Connection is end-to-end and kept`);
    const body = dechunk(r.body);
    t.ok(body, `${path}: a complete chunked body (${JSON.stringify(r.body)})`);
    t.equal(body?.data, 'hello world', `${path}: the body, re-framed by the gateway`);
    t.equal(body?.trailer, '\r\n', `${path}: no trailer field (the upstream's X-Foo) after the last chunk`);
  }
});

t.test('an upstream head repeated on one connection gives each client its own head', async (t) => {
  // The gateway recognises a head identical to the last one on the connection and reuses
  // the client head it built from it; what belongs to each request must still differ.
  let n = 0;
  for (const v of ['a', 'a', 'a', 'b', 'b', 'a', 'a']) {
    const id = `repeat-${++n}`;
    const r = await httpRequest(`http://127.0.0.1:${gw.port}/hops-1/repeat-${v}`, { headers: { 'x-request-id': id } });
    t.equal(r.status, 200);
    t.same([r.headers['x-variant'], r.headers['content-type'], r.headers['x-request-id'], r.headers['x-sluice-cache'], r.body],
      [v, v === 'a' ? 'text/plain' : 'text/csv', id, 'bypass', v.repeat(3)], `request ${n} (${v})`);
    t.equal(r.rawHeaders.filter((h) => h.toLowerCase() === 'x-variant').length, 1, `request ${n}: the upstream's lines once`);
  }
  t.equal(repeatSockets.size, 1, 'all over one upstream connection (its pool reuses the last one released)');
  // The stream format is part of what is reused: an SSE stream cut after a repeated head
  // still ends with an SSE error event.
  for (let i = 0; i < 2; i++) t.match((await httpRequest(`http://127.0.0.1:${gw.port}/hops-1/repeat-sse`)).body, /^data: token\n\n$/);
  const cut = await httpRequest(`http://127.0.0.1:${gw.port}/hops-1/repeat-sse-cut`);
  t.match(cut.body, /^data: token\n\nevent: error\ndata: \{"error":\{"code":"SLUICE_ERR_UPSTREAM_RESET"/, 'a cut stream under a repeated head ends in an SSE error event');
});

t.test('header bytes 0x80-0xFF from the upstream reach the client unchanged (not re-encoded)', async (t) => {
  const r = await rawRequest(gw.port, 'GET /hops-1/obs-text HTTP/1.1\r\nHost: gw\r\n\r\n');
  t.equal(r.status, 200);
  // rawRequest decodes latin1: one character per byte, so a UTF-8 re-encoding would show as two.
  t.equal(r.headers['x-obs-text'], 'caf\u00e9 \u00ff');
  t.equal(r.body, 'ok');
});

t.test('Host is the replica address; a foreign Host still works through the gateway', async (t) => {
  const r = await httpRequest(`${gw.url}/demo-1/_sim/echo`, { headers: { host: 'evil.example.com' } });
  t.equal(echoOf(r).headers.host, `127.0.0.1:${simPort}`, 'Host rewritten to the replica');
  t.equal(echoOf(r).headers['x-forwarded-host'], 'evil.example.com', 'the original Host travels as X-Forwarded-Host');

  // Like Ollama, the simulator refuses a foreign Host (DNS-rebinding guard)...
  const direct = await httpRequest(`http://127.0.0.1:${simPort}/api/version`, { headers: { host: 'evil.example.com' } });
  t.equal(direct.status, 403, 'the model server itself answers 403 to that Host');
  // ...which the gateway's rewrite hides: with its own guard off (allowed_hosts '*'), the same request succeeds.
  const via = await httpRequest(`${gw.url}/demo-1/api/version`, { headers: { host: 'evil.example.com' } });
  t.equal(via.status, 200, 'through the gateway, its guard off, the same request succeeds');
  t.match(JSON.parse(via.body), { version: String });
});

t.test('X-Forwarded-For, -Proto and -Host', async (t) => {
  const plain = echoOf(await httpRequest(`${gw.url}/demo-1/_sim/echo`, { headers: { host: 'api.example.com:8443' } })).headers;
  t.equal(plain['x-forwarded-for'], '127.0.0.1', 'the client address');
  t.equal(plain['x-forwarded-proto'], 'http');
  t.equal(plain['x-forwarded-host'], 'api.example.com:8443');

  const chained = echoOf(await httpRequest(`${gw.url}/demo-1/_sim/echo`, {
    headers: { 'x-forwarded-for': '203.0.113.7, 198.51.100.2', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'spoofed.example' },
  })).headers;
  t.equal(chained['x-forwarded-for'], '203.0.113.7, 198.51.100.2, 127.0.0.1', 'the client address is appended to an incoming chain');
  t.equal(typeof chained['x-forwarded-proto'], 'string', 'one X-Forwarded-Proto, not two');
  t.equal(typeof chained['x-forwarded-host'], 'string', 'one X-Forwarded-Host, not two');
  t.equal(chained['x-forwarded-host'], `127.0.0.1:${gw.port}`, 'X-Forwarded-Host is the Host the gateway received');

  // Each client's own address, however requests from different ones interleave.
  for (const from of ['127.0.0.2', '127.0.0.3', '127.0.0.2', '127.0.0.1']) {
    const seen = echoOf(await httpRequest(`${gw.url}/demo-1/_sim/echo`, { localAddress: from })).headers;
    t.equal(seen['x-forwarded-for'], from, `a request from ${from}`);
  }

  // Two X-Forwarded-For header lines are one list (RFC 9110 5.3).
  const two = await rawRequest(gw.port, 'GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.2\r\n\r\n');
  t.equal(echoOf(two).headers['x-forwarded-for'], '203.0.113.7, 198.51.100.2, 127.0.0.1');
});

t.test('by default (listen.forwarded_for: false) a client chain passes through and nothing is appended', async (t) => {
  const sim = await startSim([]);
  const quiet = await startGateway({ deployments: [{ model: 'r', version: '1', runtime: 'remote', urls: [sim.url] }] });
  t.teardown(async () => {
    await quiet.stop();
    await sim.stop();
  });
  const none = echoOf(await httpRequest(`${quiet.url}/r-1/_sim/echo`)).headers;
  t.notOk('x-forwarded-for' in none, 'no X-Forwarded-For when the client sent none');
  t.equal(none['x-forwarded-proto'], 'http', 'the other forwarding headers are still set');
  const chained = echoOf(await httpRequest(`${quiet.url}/r-1/_sim/echo`, { headers: { 'x-forwarded-for': '203.0.113.7' } })).headers;
  t.equal(chained['x-forwarded-for'], '203.0.113.7', "the client's chain, unchanged");
});

t.test('x-request-id: kept when sent, generated when absent, the same upstream and downstream', async (t) => {
  const sent = await httpRequest(`${gw.url}/demo-1/_sim/echo`, { headers: { 'x-request-id': 'client-chosen-id-42' } });
  t.equal(sent.headers['x-request-id'], 'client-chosen-id-42');
  t.equal(echoOf(sent).headers['x-request-id'], 'client-chosen-id-42');

  const ids = new Set<string>();
  for (let i = 0; i < 5; i++) {
    const r = await httpRequest(`${gw.url}/demo-1/_sim/echo`);
    const id = r.headers['x-request-id'];
    t.ok(typeof id === 'string' && id.length >= 8, `generated id ${String(id)}`);
    t.equal(echoOf(r).headers['x-request-id'], id, 'the upstream saw the same id');
    ids.add(id as string);
  }
  t.equal(ids.size, 5, 'generated ids are unique');
  t.equal(sent.rawHeaders.filter((h) => h.toLowerCase() === 'x-request-id').length, 1, 'one x-request-id in the response');
});

t.test('path and query reach the upstream unchanged', async (t) => {
  const paths = [
    '/_sim/echo/a%2Fb/c%20d/%E2%9C%93?x=1&y=%E2%9C%93&z=a+b&empty=&x=2',
    '/_sim/echo/..%2F..%2Fetc?q=%2e%2e',
    '/_sim/echo//double//slash/?',
    '/_sim/echo/semi;colon:at@bang!$&\'()*+,=',
  ];
  for (const p of paths) {
    const r = await rawRequest(gw.port, `GET /demo-1${p} HTTP/1.1\r\nHost: gw\r\n\r\n`);
    t.equal(r.status, 200, p);
    // A bare trailing '?' carries no query; either spelling reaches the same resource.
    t.equal(echoOf(r).url, p.endsWith('?') ? p.slice(0, -1) : p, `unchanged: ${p}`);
  }
  const post = await httpRequest(`${gw.url}/demo-1/_sim/echo/x?k=v`, { method: 'POST', body: 'hello' });
  t.match(echoOf(post), { method: 'POST', url: '/_sim/echo/x?k=v', body_bytes: 5 });
  t.equal(echoOf(post).headers['content-length'], '5');
});

t.test('/llama-3-8b/ is model llama-3, version 8b (split on the last hyphen)', async (t) => {
  const d = (await deployments(gw)).find((x) => x.id === 'llama-3-8b');
  t.match(d, { model: 'llama-3', version: '8b' });
  const port = d!.replicas[0]!.port;
  const pinned = await httpRequest(`${gw.url}/llama-3-8b/_sim/echo`);
  t.equal(pinned.status, 200);
  t.equal(echoOf(pinned).headers.host, `127.0.0.1:${port}`, "reached llama-3-8b's replica");
  const alias = await httpRequest(`${gw.url}/llama-3/_sim/echo`);
  t.equal(alias.status, 200, 'the alias is the model name, llama-3');
  t.equal(echoOf(alias).headers.host, `127.0.0.1:${port}`);
  const wrong = await httpRequest(`${gw.url}/llama/_sim/echo`);
  t.equal(wrong.status, 404, 'there is no model "llama"');
});


t.test('HEAD and body-less responses keep the client connection usable', async (t) => {
  const conn = await RawConnection.open(gw.port);
  t.teardown(() => conn.close());
  const get = 'GET /demo-1/ HTTP/1.1\r\nHost: gw\r\n\r\n';
  const steps: Array<[string, string, number, Record<string, string | undefined>]> = [
    ['HEAD through the gateway', 'HEAD /demo-1/ HTTP/1.1\r\nHost: gw\r\n\r\n', 200, { 'content-length': '17' }],
    ['HEAD of a remote upstream', 'HEAD /hops-1/x HTTP/1.1\r\nHost: gw\r\n\r\n', 200, { 'content-length': '1234' }],
    ['204 from upstream', 'GET /hops-1/no-content HTTP/1.1\r\nHost: gw\r\n\r\n', 204, { 'content-length': undefined, 'x-kind': '204' }],
    ['304 from upstream', 'GET /hops-1/not-modified HTTP/1.1\r\nHost: gw\r\n\r\n', 304, { etag: '"v1"' }],
    ['HEAD of the gateway health check', 'HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n', 200, {}],
    ['HEAD of an unknown route', 'HEAD /nope-1/x HTTP/1.1\r\nHost: gw\r\n\r\n', 404, { 'content-type': 'application/json' }],
  ];
  for (const [what, head, status, headers] of steps) {
    const r = await conn.request(head, { bodyless: head.startsWith('HEAD') });
    t.ok(r, `${what}: answered`);
    if (r === null) return;
    t.equal(r.status, status, `${what}: status`);
    for (const [k, v] of Object.entries(headers)) t.equal(r.headers[k], v, `${what}: ${k}`);
    // The next request on the same connection must get its own, intact answer: a body
    // sent after a HEAD response, or a connection dropped after it, would show here.
    const next = await conn.request(get);
    t.ok(next, `${what}: the connection is still open`);
    if (next === null) return;
    t.equal(next.status, 200, `${what}: next request on the connection succeeds`);
    t.equal(next.body, 'Ollama is running', `${what}: with its own body`);
  }
  t.equal(conn.unread, '', 'no stray bytes on the connection');
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
