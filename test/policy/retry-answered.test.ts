// Retries only before any response byte: once a replica has sent part of its answer (here
// half a status line and head, then a reset), it may have acted on the request, so the
// request is not sent again: not to another replica, not to a fallback, and not on a
// fresh socket after a reused one. The client gets 502 SLUICE_ERR_UPSTREAM_RESET and
// sluice_retries_total does not move. (Each of these sent it again: the server saw the
// same request up to 3 times.)

import { createServer, type Server, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { errorOf, gwMetric } from '../helpers/policy.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 19306-19311 belong to this file: the servers below on 19306-19308, the fallback's
// simulator replica on 19309-19311.
const HALF_HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: appl';
const WHOLE = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok';

interface TestServer {
  readonly url: string;
  /** Request heads received, over all connections. */
  seen: number;
  close(): Promise<void>;
}

/**
 * A replica on `port`: `answer(n)` says what its connection does with its n-th request
 * (1-based): 'whole' answers it, 'half' writes half a head and resets the connection.
 */
async function server(port: number, answer: (n: number) => 'whole' | 'half'): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const s: TestServer = { url: `http://127.0.0.1:${port}`, seen: 0, close: async () => undefined };
  const srv: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let n = 0;
    let buffered = '';
    sock.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        buffered = buffered.slice(end + 4);
        s.seen++;
        if (answer(++n) === 'whole') {
          sock.write(WHOLE);
          continue;
        }
        sock.write(HALF_HEAD, () => setTimeout(() => sock.resetAndDestroy(), 20));
        return;
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  s.close = () => new Promise<void>((resolve) => {
    for (const sock of sockets) sock.destroy();
    srv.close(() => resolve());
  });
  return s;
}

let gw: Gateway;
let halfA: TestServer;
let halfB: TestServer;
let secondHalf: TestServer;

t.before(async () => {
  [halfA, halfB, secondHalf] = await Promise.all([
    server(19306, () => 'half'),
    server(19307, () => 'half'),
    // Each connection answers its first request whole, then half of the next one.
    server(19308, (n) => (n === 1 ? 'whole' : 'half')),
  ]);
  const noBreaker = { enabled: false };
  const retry = { attempts: 2, budget_percent: 100 };
  gw = await startGateway({
    ports: { from: 19309, to: 19311 },
    log: { level: 'info', access: false },
    deployments: [
      // Health checks off: the misbehaving replicas stay routed.
      { model: 'hh', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [halfA.url, halfB.url], policies: { breaker: noBreaker, retry } },
      { model: 'hf', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [halfA.url], fallbacks: ['fb-1'], policies: { breaker: noBreaker, retry } },
      { model: 'fb', version: '1', runtime: 'sim' },
      { model: 'ka', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [secondHalf.url], policies: { breaker: noBreaker, retry } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await Promise.all([halfA, halfB, secondHalf].map((s) => s?.close()));
});

const seen = (): number => halfA.seen + halfB.seen;

t.test('half a head, then a reset: not retried on another replica', async (t) => {
  for (let i = 0; i < 3; i++) {
    const before = seen();
    const r = await httpRequest(`${gw.url}/hh-1/v1/models`);
    t.equal(r.status, 502, `request ${i + 1}: 502`);
    t.equal(errorOf(r)?.code, 'SLUICE_ERR_UPSTREAM_RESET', 'SLUICE_ERR_UPSTREAM_RESET');
    t.equal(seen() - before, 1, 'the replicas saw it once');
  }
  t.equal(await gwMetric(gw, 'sluice_retries_total', { deployment: 'hh-1' }), 0, 'sluice_retries_total did not move');
});

t.test('half a head, then a reset: not sent to a fallback', async (t) => {
  const before = halfA.seen;
  const r = await httpRequest(`${gw.url}/hf-1/v1/models`);
  t.equal(r.status, 502);
  t.equal(errorOf(r)?.code, 'SLUICE_ERR_UPSTREAM_RESET');
  t.equal(r.headers['x-sluice-served-by'], undefined, 'no fallback answered');
  t.equal(halfA.seen - before, 1, 'the replica saw it once');
  t.equal(await gwMetric(gw, 'sluice_fallbacks_total', { deployment: 'hf-1' }, { absent: 0 }), 0, 'no fallback counted');
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'fb-1' }, { absent: 0 }), 0, 'the fallback got nothing');
});

t.test('half a head on a reused keep-alive socket: not sent again on a fresh one', async (t) => {
  const first = await httpRequest(`${gw.url}/ka-1/v1/models`);
  t.equal(first.status, 200, 'the first request on the connection is answered');
  const before = secondHalf.seen;
  const second = await httpRequest(`${gw.url}/ka-1/v1/models`);
  t.equal(second.status, 502, 'the second, half answered on the same socket, fails');
  t.equal(errorOf(second)?.code, 'SLUICE_ERR_UPSTREAM_RESET');
  t.equal(secondHalf.seen - before, 1, 'the server saw it once');
});
