// sluice_queue_wait_seconds observes every wait in a deployment's queue, also those that
// ended without a replica: a 503 SLUICE_ERR_QUEUE_TIMEOUT after max_wait_ms, or a client
// that left. Left out, the histogram would never show the longest waits.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest, metric } from '../helpers/http.js';
import { metricsText, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 24250-24259 belong to this file: the upstream on the first.
const UPSTREAM_PORT = 24250;
const MAX_WAIT_MS = 300;
let gw: Gateway;
let upstream: Server;

t.before(async () => {
  // Answers after ?ms= milliseconds.
  upstream = createServer((req, res) => {
    req.resume();
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end('ok'), ms);
  });
  await new Promise<void>((resolve, reject) => {
    upstream.once('error', reject);
    upstream.listen(UPSTREAM_PORT, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 24251, to: 24259 },
    log: { level: 'info', access: false },
    deployments: [
      {
        model: 'q', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
        policies: { queue: { max_inflight_per_replica: 1, max_length: 5, max_wait_ms: MAX_WAIT_MS } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

async function waits(): Promise<{ count: number; sum: number }> {
  const text = await metricsText(gw);
  return {
    count: metric(text, 'sluice_queue_wait_seconds_count', { deployment: 'q-1' }, { absent: 0 }),
    sum: metric(text, 'sluice_queue_wait_seconds_sum', { deployment: 'q-1' }, { absent: 0 }),
  };
}

t.test('a queue timeout and a client that left while queued are waits', async (t) => {
  const busy = httpRequest(`${gw.url}/q-1/x?ms=1500`);
  await sleep(100);
  const timedOut = await httpRequest(`${gw.url}/q-1/x`);
  t.equal(timedOut.status, 503, 'the queued request timed out');
  t.match(timedOut.body, /SLUICE_ERR_QUEUE_TIMEOUT/);
  const left = await httpRequest(`${gw.url}/q-1/x`, { timeoutMs: 150 }).catch((err: Error) => err);
  t.ok(left instanceof Error, 'the client left while queued');
  await sleep(300);
  const w = await waits();
  t.equal(w.count, 2, 'both waits observed');
  t.ok(w.sum >= (MAX_WAIT_MS + 100) / 1000, `their time too (${w.sum.toFixed(3)} s)`);
  t.equal((await busy).status, 200);
});
