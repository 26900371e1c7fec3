// A response the gateway made itself says `x-sluice-cache: bypass`, even for a cacheable
// request (temperature 0): an upstream failure before any head (502), an open breaker
// (503 SLUICE_ERR_CIRCUIT_OPEN), and the same for a request coalesced with one that failed.
// None of them counts in sluice_cache_misses_total: a miss is a cacheable request a
// replica answered. (They said `miss` and were counted as misses.)

import { createServer, type Server, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric, refusingPort } from '../helpers/policy.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 19312-19316 belong to this file: 19312 stays closed (a replica that refuses
// connections), 19313 resets each connection 300 ms after its request (no byte sent), the
// simulator replica takes one of 19314-19316.
let gw: Gateway;
let slowReset: Server;
const sockets = new Set<Socket>();

t.before(async () => {
  const refused = await refusingPort(19312);
  slowReset = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.once('data', () => setTimeout(() => sock.resetAndDestroy(), 300));
  });
  await new Promise<void>((resolve, reject) => {
    slowReset.once('error', reject);
    slowReset.listen(19313, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 19314, to: 19316 },
    log: { level: 'info', access: false },
    deployments: [
      // A refused connect ejects the replica at once: the next request finds the breaker open.
      { model: 'down', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${refused}`], policies: { retry: { attempts: 0 }, breaker: { reset_timeout_ms: 60_000 } } },
      { model: 'rst', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: ['http://127.0.0.1:19313'], policies: { retry: { attempts: 0 }, breaker: { enabled: false } } },
      { model: 'up', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'] },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (slowReset ? slowReset.close(() => resolve()) : resolve()));
});

/** A temperature-0 chat request: a cache candidate. */
const chat = (deployment: string, content = 'hello'): Promise<Reply> => httpRequest(`${gw.url}/${deployment}/v1/chat/completions`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'demo', temperature: 0, messages: [{ role: 'user', content }] }),
});
const misses = (d: string): Promise<number> => gwMetric(gw, 'sluice_cache_misses_total', { deployment: d });

t.test('a replica\'s answer to a cacheable request is a miss, then a hit (the control)', async (t) => {
  const first = await chat('up-1');
  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal((await chat('up-1')).headers['x-sluice-cache'], 'hit');
  t.equal(await misses('up-1'), 1, 'one miss counted');
});

t.test('an upstream failure before a head, then an open breaker: bypass, no miss', async (t) => {
  const refused = await chat('down-1');
  t.equal(refused.status, 502);
  t.equal(errorOf(refused)?.code, 'SLUICE_ERR_UPSTREAM_CONNECT');
  t.equal(refused.headers['x-sluice-cache'], 'bypass', 'the refused connect: bypass');
  const open = await chat('down-1');
  t.equal(open.status, 503);
  t.equal(errorOf(open)?.code, 'SLUICE_ERR_CIRCUIT_OPEN');
  t.equal(open.headers['x-sluice-cache'], 'bypass', 'the open breaker: bypass');
  t.equal(await misses('down-1'), 0, 'neither is a miss');
});

t.test('identical requests coalesced on one that fails before a head: every one says bypass', async (t) => {
  const replies = await Promise.all([chat('rst-1', 'same'), chat('rst-1', 'same'), chat('rst-1', 'same')]);
  t.same(replies.map((r) => r.status), [502, 502, 502]);
  t.same(replies.map((r) => errorOf(r)?.code), Array(3).fill('SLUICE_ERR_UPSTREAM_RESET'));
  t.same(replies.map((r) => r.headers['x-sluice-cache']), ['bypass', 'bypass', 'bypass']);
  t.equal(await gwMetric(gw, 'sluice_coalesced_total', { deployment: 'rst-1' }), 2, 'two joined the first');
  t.equal(await misses('rst-1'), 0, 'no miss counted');
});
