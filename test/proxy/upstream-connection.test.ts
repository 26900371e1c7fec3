// One upstream connection against a real TCP server on loopback: the request bytes reach
// the server whole and in order whichever write path they take (straight to the socket's
// handle when nothing is queued, through the Writable otherwise), a write the kernel cannot
// take at once reports backpressure and then the drain, and the response is parsed and the
// socket handed back for reuse; the pool ages idle sockets out.

import t, { type Test } from 'tap';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { ErrorCode } from '../../src/errors/index.js';
import { UpstreamConnection, type UpstreamHandler } from '../../src/proxy/upstream/connection.js';
import { CountingPool as Pool } from '../helpers/upstream-pool.js';
import { UpstreamPool } from '../../src/proxy/upstream/pool.js';
import { upstreamTransport } from '../../src/proxy/upstream/transport.js';

class Handler implements UpstreamHandler {
  status = 0;
  body = '';
  ended = false;
  drains = 0;
  error: string | null = null;
  onResponseHead(status: number): void {
    this.status = status;
  }
  onResponseData(chunk: Buffer): boolean {
    this.body += chunk.toString('latin1');
    return true;
  }
  onResponseEnd(): void {
    this.ended = true;
  }
  onResponseError(code: ErrorCode, detail: string): void {
    this.error = `${code}: ${detail}`;
  }
  onRequestDrain(): void {
    this.drains++;
  }
  corked(fn: () => void): void {
    fn();
  }
}


/** A server that hands its one accepted socket to the test, paused: it reads only when told. */
async function server(t: Test): Promise<{ port: number; accepted: Promise<Socket> }> {
  let accept!: (s: Socket) => void;
  const accepted = new Promise<Socket>((resolve) => (accept = resolve));
  const srv: Server = createServer({ pauseOnConnect: true }, accept);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.teardown(() => srv.close());
  const address = srv.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { port: address.port, accepted };
}

/** Reads from `s` until `bytes` have arrived, then pauses it again (the socket stays open). */
function readBytes(s: Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      n += chunk.length;
      if (n < bytes) return;
      s.off('data', onData).off('error', reject).pause();
      resolve(Buffer.concat(parts));
    };
    s.on('data', onData).on('error', reject);
    s.resume();
  });
}

async function connected(conn: UpstreamConnection): Promise<void> {
  if (conn.connecting) await once(conn.socket, 'connect');
}

t.test('a small head is written at once and the response comes back; the socket is released', async (t) => {
  const { port, accepted } = await server(t);
  const pool = new Pool(port);
  const conn = new UpstreamConnection(pool);
  t.teardown(() => conn.abort());
  await connected(conn);
  const peer = await accepted;
  const handler = new Handler();
  const head = 'GET /predict HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n';
  t.equal(conn.send(handler, head, false, null, true), true, 'no backpressure for a small head');
  const got = await readBytes(peer, head.length);
  t.equal(got.toString('latin1'), head);
  peer.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  while (!handler.ended) await new Promise((r) => setTimeout(r, 5));
  t.equal(handler.status, 200);
  t.equal(handler.body, 'ok');
  t.equal(pool.released, 1, 'kept alive for the next request');

  // The reused socket: a head with a first body piece, coalesced into one write.
  const handler2 = new Handler();
  const head2 = 'POST /invocations HTTP/1.1\r\ncontent-length: 4\r\n\r\n';
  t.equal(conn.send(handler2, head2, false, Buffer.from('{"a"'), true), true);
  const got2 = await readBytes(peer, head2.length + 4);
  t.equal(got2.toString('latin1'), `${head2}{"a"`);
  peer.end('HTTP/1.1 204 No Content\r\n\r\n');
  while (!handler2.ended) await new Promise((r) => setTimeout(r, 5));
  t.equal(handler2.status, 204);
  t.equal(handler2.error, null);
});

t.test('a head the kernel cannot take at once: backpressure, the drain, and later writes stay behind it', async (t) => {
  const { port, accepted } = await server(t);
  const conn = new UpstreamConnection(new Pool(port));
  t.teardown(() => conn.abort());
  await connected(conn);
  const peer = await accepted;
  const handler = new Handler();
  // Far more than loopback's socket buffers hold while the server does not read.
  const size = 32 * 1024 * 1024;
  const head = `POST /big HTTP/1.1\r\nx-fill: ${'a'.repeat(size)}\r\ntransfer-encoding: chunked\r\n\r\n`;
  t.equal(conn.send(handler, head, false, null, false), false, 'the write reports backpressure');
  // The public net.Socket path (SLUICE_UPSTREAM_TRANSPORT=socket) buffers in the Writable, as Node does.
  if (upstreamTransport === 'stream_handle') t.equal(conn.socket.writableLength, 0, 'libuv holds the rest, not a second buffer in the Writable');
  t.equal(handler.drains, 0);
  // A body piece written meanwhile must arrive after the whole head.
  conn.write('4\r\ntail\r\n0\r\n\r\n');
  conn.requestEnded();
  const expected = `${head}4\r\ntail\r\n0\r\n\r\n`;
  const got = await readBytes(peer, expected.length);
  t.equal(got.length, expected.length, 'every byte arrived');
  t.ok(got.equals(Buffer.from(expected, 'latin1')), 'in order');
  while (handler.drains === 0) await new Promise((r) => setTimeout(r, 5));
  t.ok(handler.drains >= 1, 'the drain was reported once the head was out');
  peer.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
  while (!handler.ended) await new Promise((r) => setTimeout(r, 5));
  t.equal(handler.status, 200);
  t.equal(handler.error, null);
});

t.test('the pool closes a socket idle past its keep-alive time, measured from the first sweep that saw it idle', async (t) => {
  const closed: Socket[] = [];
  const srv = createServer((s) => {
    s.on('data', () => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    s.on('close', () => closed.push(s));
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.teardown(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const pool = new UpstreamPool({ host: '127.0.0.1', port, maxConnections: 2, idleMs: 1_000 });
  t.teardown(() => pool.close());
  const request = async (): Promise<UpstreamConnection> => {
    const conn = pool.acquire({ onConnection: () => true })!;
    const handler = new Handler();
    conn.send(handler, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', false, null, true);
    while (!handler.ended) await new Promise((r) => setTimeout(r, 5));
    t.equal(handler.body, 'ok');
    return conn;
  };
  const first = await request();
  t.equal(pool.idleConnections, 1, 'released for reuse');
  // The sweeps run every 100 ms with the wall clock; here the test drives them.
  const t0 = Date.now();
  pool.sweep(t0);
  pool.sweep(t0 + 900);
  t.equal(pool.idleConnections, 1, 'kept within the keep-alive time');
  t.equal(await request(), first, 'and reused: the warm socket, not a new one');
  pool.sweep(t0 + 1_500);
  t.equal(pool.idleConnections, 1, 'reuse restarts its idle time (stamped again by the next sweep)');
  pool.sweep(t0 + 2_600);
  t.equal(pool.idleConnections, 0, 'closed once idle for longer than the keep-alive time');
  while (closed.length === 0) await new Promise((r) => setTimeout(r, 5));
  t.equal(closed.length, 1, 'the server saw its one connection closed');
});
