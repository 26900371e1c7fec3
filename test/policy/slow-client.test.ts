// upstream.idle_timeout_ms bounds a replica that stalls mid-answer. A client that reads
// slowly makes the gateway pause the replica itself (backpressure): that pause is not the
// replica stalling. A client that takes nothing written to it for the idle timeout is cut
// as the client's fault (SLUICE_ERR_CLIENT_TOO_SLOW), which never counts against the
// replica's breaker: slow clients cannot eject a healthy replica.

import { Buffer } from 'node:buffer';
import { connect, createServer, type Server, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest, metric } from '../helpers/http.js';
import { jsonLogs, metricsText, startGateway, eventually, type Gateway } from '../helpers/procs.js';

// Ports 24210-24219 belong to this file: the upstream on the first.
const UPSTREAM_PORT = 24210;
const IDLE_MS = 1_000;
const BODY_BYTES = 48 * 1024 * 1024;
let gw: Gateway;
let upstream: Server;
const body = Buffer.alloc(BODY_BYTES, 0x61);

t.before(async () => {
  // Every answer at once: the replica never stalls, whatever the client does.
  upstream = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      if (!d.includes('\r\n\r\n')) return;
      const small = d.includes('/small');
      sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${small ? 2 : BODY_BYTES}\r\n\r\n`);
      sock.write(small ? 'ok' : body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    upstream.once('error', reject);
    upstream.listen(UPSTREAM_PORT, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 24211, to: 24219 },
    upstream: { idle_timeout_ms: IDLE_MS },
    deployments: [
      {
        model: 'big', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
        policies: { breaker: { consecutive_failures: 2 }, retry: { attempts: 0 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

/** A raw client of /big-1/<path> that never reads its answer (a paused socket). */
function client(path: string): Promise<{ sock: Socket }> {
  return new Promise((resolve, reject) => {
    const sock = connect(gw.port, '127.0.0.1', () => {
      sock.write(`GET /big-1/${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      resolve({ sock });
    });
    sock.pause();
    sock.on('error', reject);
  });
}

t.test('a client that stops reading is cut as too slow; the replica is not blamed', async (t) => {
  const before = jsonLogs(gw).filter((l) => l.msg === 'request' && l.path === '/big-1/big').length;
  const clients = [await client('big?stalled'), await client('big?stalled')];
  const lines = await eventually(() => {
    const found = jsonLogs(gw).filter((l) => l.msg === 'request' && l.path === '/big-1/big').slice(before);
    return found.length >= 2 ? found : undefined;
  }, 6 * IDLE_MS, 'both stalled requests to end');
  t.same(lines.map((l) => l.error), ['SLUICE_ERR_CLIENT_TOO_SLOW', 'SLUICE_ERR_CLIENT_TOO_SLOW'], 'cut as the client\'s fault');
  for (const c of clients) c.sock.destroy();
  const text = await metricsText(gw);
  t.equal(metric(text, 'sluice_upstream_errors_total', { deployment: 'big-1', code: 'SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT' }, { absent: 0 }), 0, 'no upstream idle timeout counted');
  t.equal(metric(text, 'sluice_breaker_state', { deployment: 'big-1' }), 0, 'the breaker stays closed (2 failures would open it)');
  const r = await httpRequest(`${gw.url}/big-1/small`);
  t.equal(r.status, 200, 'the replica still serves');
  t.equal(r.body, 'ok');
});
