// With workers: 2, /metrics sums both workers' counters; a worker too busy to answer the
// scrape's request within its second (here: the cache key of a 50 MB JSON body, which
// cache.max_request_bytes allows) is counted by its last answer, never left out: left out,
// every counter it holds dropped from the page (sluice_requests_total 41 -> 21), which
// Prometheus reads as a reset. Through the real gateway, /metrics read while one worker works.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { metricsText, sample, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27780-27789 belong to this file: 27780 the model server.
const SERVER_PORT = 27780;
const REQUESTS = 40;

let server: Server;
let gw: Gateway;

t.before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(SERVER_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    workers: 2,
    policies: { cache: { max_request_bytes: 64 * 1024 * 1024 } },
    deployments: [{ model: 'm', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${SERVER_PORT}`], health_check: { enabled: false } }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

t.test('a busy worker\'s counters stay on the page', async (t) => {
  // Each on its own connection: the kernel spreads them over both workers' sockets.
  const statuses: number[] = [];
  for (let i = 0; i < REQUESTS; i++) statuses.push((await httpRequest(`${gw.url}/m-1/r${i}`, { headers: { connection: 'close' } })).status);
  t.same(statuses, Array.from({ length: REQUESTS }, () => 200));
  const total = async (): Promise<number> => sample(await metricsText(gw), 'sluice_requests_total', { deployment: 'm-1', code: '200' }) ?? 0;
  t.equal(await total(), REQUESTS);

  const messages = Array.from({ length: 600_000 }, (_, i) => ({ role: 'user', content: `m${i}`, k: [i, { z: i }] }));
  const body = JSON.stringify({ model: 'm', temperature: 0, messages });
  const started = Date.now();
  let busyFor = -1;
  const big = httpRequest(`${gw.url}/m-1/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    .catch(() => undefined)
    .finally(() => { busyFor = Date.now() - started; });
  const seen: number[] = [];
  while (busyFor < 0) seen.push(await total());
  await big;
  t.ok(busyFor > 1500, `one worker was busy for ${busyFor} ms, past the scrape's wait`);
  t.same(seen.filter((n) => n < REQUESTS), [], `every read while it worked had all ${REQUESTS} (${seen.length} reads)`);
});
