// Request ids are UUIDs (version 4 layout): model servers that validate x-request-id
// (llama-cpp-python's server, through starlette-context, answers 400 with an empty body to
// anything else) accept what sluice sends. An id the client sent is kept as it is.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { RequestIds } from '../../src/proxy/request-id.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('ids are distinct UUID v4 strings, across generators too', async (t) => {
  const a = new RequestIds();
  const b = new RequestIds();
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    for (const id of [a.next(), b.next()]) {
      if (!UUID_V4.test(id)) t.fail(`not a UUID v4: ${id}`);
      seen.add(id);
    }
  }
  t.equal(seen.size, 20_000, 'no id repeats');
});

t.test('the counter carries into its high digits without leaving the UUID layout', async (t) => {
  const ids = new RequestIds();
  let prev = ids.next();
  // The low six hex digits run from 100000 to ffffff: a carry comes within 2^24 ids.
  for (let i = 0; i < 0x100_0000; i++) {
    const id = ids.next();
    if (id.endsWith('100000') && prev.endsWith('ffffff')) {
      t.match(id, UUID_V4);
      t.equal(id.slice(0, 24), prev.slice(0, 24), 'the random part stays');
      t.equal(parseInt(id.slice(24, 30), 16), (parseInt(prev.slice(24, 30), 16) + 1) % 0x100_0000, 'the high digits move on by one');
      return;
    }
    prev = id;
  }
  t.fail('no carry in 2^24 ids');
});

let gw: Gateway;
let upstream: Server;
const upstreamIds: string[] = [];

t.before(async () => {
  // The rule of starlette-context's request-id plugin: a value Python's uuid.UUID refuses is a 400, empty body.
  upstream = createServer((req, res) => {
    const id = String(req.headers['x-request-id'] ?? '');
    upstreamIds.push(id);
    if (!/^[0-9a-f]{32}$/i.test(id.replace(/-/g, ''))) {
      res.writeHead(400, { 'content-length': 0 });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  gw = await startGateway({
    workers: 2,
    log: { level: 'info', access: false },
    deployments: [{ model: 'strict', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`] }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
});

t.test('a server that validates x-request-id accepts every id the gateway makes', async (t) => {
  upstreamIds.length = 0;
  const ids = new Set<string>();
  for (let i = 0; i < 40; i++) {
    // New connections: the kernel spreads them over both workers.
    const r = await httpRequest(`${gw.url}/strict-1/v1/models`, { headers: { connection: 'close' } });
    t.equal(r.status, 200, `request ${i} accepted upstream`);
    const id = String(r.headers['x-request-id']);
    t.match(id, UUID_V4, 'a UUID v4');
    ids.add(id);
  }
  t.equal(ids.size, 40, 'every request has its own id');
  t.same(new Set(upstreamIds), ids, 'the upstream got the ids the clients got');
});

t.test('an id the client sent is kept', async (t) => {
  const mine = '0b7c2a4e-5d1f-4c3b-9a8e-7f6d5c4b3a21';
  const r = await httpRequest(`${gw.url}/strict-1/v1/models`, { headers: { 'x-request-id': mine } });
  t.equal(r.status, 200);
  t.equal(r.headers['x-request-id'], mine);
  t.equal(upstreamIds.at(-1), mine);
});

t.test('of two ids the client sent, the first is kept, as nginx keeps it, and the upstream sees one', async (t) => {
  const first = '1b7c2a4e-5d1f-4c3b-9a8e-7f6d5c4b3a21';
  const second = '2b7c2a4e-5d1f-4c3b-9a8e-7f6d5c4b3a22';
  const r = await httpRequest(`${gw.url}/strict-1/v1/models`, { headers: { 'x-request-id': [first, second] } });
  t.equal(r.status, 200);
  t.equal(r.headers['x-request-id'], first);
  t.equal(upstreamIds.at(-1), first, 'one id upstream: the first');
});

t.test('a non-ASCII id comes back as the bytes it was sent in, in the gateway\'s own answers too', async (t) => {
  // UTF-8 `café-…`: proxied answers copied its bytes; the gateway's own (a 404 here) wrote the
  // Latin-1 reading of them as UTF-8, four bytes for the two of `é` (W4).
  const { connect } = await import('node:net');
  const id = Buffer.from('caf\u00e9-0001', 'utf8');
  const socket = connect(gw.port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(Buffer.concat([Buffer.from('GET /no-such-route-9/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Request-Id: '), id, Buffer.from('\r\n\r\n')]));
  await ended;
  const answer = Buffer.concat(chunks);
  t.match(answer.toString('latin1'), /^HTTP\/1\.1 404 /);
  t.ok(answer.includes(Buffer.concat([Buffer.from('x-request-id: '), id, Buffer.from('\r\n')])), 'the header, byte for byte');
  const body = JSON.parse(answer.subarray(answer.indexOf('\r\n\r\n') + 4).toString('utf8')) as { error: { request_id: string } };
  t.equal(body.error.request_id, 'caf\u00e9-0001', 'the body quotes it as the text it is');
});
