// A cache hit says how old it is (RFC 9111 section 4: a cache MUST generate Age on an answer
// it serves without validation): the Age its upstream gave, plus the time it was stored.
// Without it a cache behind sluice would keep a 55 s old answer fresh for its whole max-age.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 24270-24279 belong to this file: the upstream on the first.
const UPSTREAM_PORT = 24270;
let gw: Gateway;
let upstream: Server;

t.before(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    res.setHeader('cache-control', 'max-age=60');
    if (req.url?.includes('aged')) res.setHeader('age', '5');
    res.end('ok');
  });
  await new Promise<void>((resolve, reject) => {
    upstream.once('error', reject);
    upstream.listen(UPSTREAM_PORT, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 24271, to: 24279 },
    log: { level: 'info', access: false },
    deployments: [{ model: 'age', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], policies: { cache: { enabled: true } } }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

const ASK = { 'x-sluice-cache': 'on' };

t.test('a hit carries Age: its time in the cache', async (t) => {
  const miss = await httpRequest(`${gw.url}/age-1/fresh`, { headers: ASK });
  t.equal(miss.headers['x-sluice-cache'], 'miss');
  t.equal(miss.headers.age, undefined, 'the upstream\'s answer as it came');
  await sleep(1_100);
  const hit = await httpRequest(`${gw.url}/age-1/fresh`, { headers: ASK });
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  t.ok(Number(hit.headers.age) >= 1 && Number(hit.headers.age) <= 3, `Age ${hit.headers.age}`);
});

t.test('the Age the upstream gave is added to, not repeated', async (t) => {
  await httpRequest(`${gw.url}/age-1/aged`, { headers: ASK });
  await sleep(1_100);
  const hit = await httpRequest(`${gw.url}/age-1/aged`, { headers: ASK });
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  const ages = hit.rawHeaders.filter((_, i) => i % 2 === 0 && hit.rawHeaders[i]!.toLowerCase() === 'age');
  t.equal(ages.length, 1, 'one Age line');
  t.ok(Number(hit.headers.age) >= 6 && Number(hit.headers.age) <= 8, `Age ${hit.headers.age} (5 from the upstream, 1 in the cache)`);
});
