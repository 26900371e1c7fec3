// The response cache honours what the upstream's Cache-Control says (RFC 9111): an answer
// with no-store or private is never stored (nor replayed), and a max-age (or s-maxage, which
// wins for a shared cache) shorter than ttl_ms makes the entry expire sooner.

import t from 'tap';
import { createServer, type Server } from 'node:http';
import { storableForMs } from '../../src/policy/index.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

// This file's upstream listens on 19290; the gateway spawns nothing (remote deployment).
const UPSTREAM_PORT = 19290;
let gw: Gateway;
let upstream: Server;
/** Requests the upstream answered, by query `kind`. */
const calls = new Map<string, number>();

/** The Cache-Control each `kind` of answer carries (none for `plain`). */
const CONTROL: Record<string, string | undefined> = {
  plain: undefined,
  nostore: 'no-store',
  private: 'private, max-age=600',
  nostore_mixed: 'max-age=600, No-Store',
  short: 'max-age=1',
  smaxage: 'max-age=600, s-maxage=1',
  long: 'max-age=3600',
};

t.before(async () => {
  upstream = createServer((req, res) => {
    const kind = new URL(req.url!, 'http://x').searchParams.get('kind') ?? 'plain';
    req.resume();
    req.on('end', () => {
      const n = (calls.get(kind) ?? 0) + 1;
      calls.set(kind, n);
      const body = JSON.stringify({ predictions: [kind, n] });
      const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
      const cc = CONTROL[kind];
      if (cc !== undefined) headers['cache-control'] = cc;
      res.writeHead(200, headers).end(body);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    ports: { from: 19295, to: 19299 },
    log: { level: 'info', access: false },
    deployments: [
      {
        model: 'up', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
        policies: { cache: { ttl_ms: 60_000 }, retry: { attempts: 0 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

function invoke(kind: string): Promise<Reply> {
  return httpRequest(`${gw.url}/up-1/invocations?kind=${kind}`, { method: 'POST', body: '{"inputs": [1, 2, 3]}', headers: { 'content-type': 'application/json' } });
}

t.test('an answer without Cache-Control is stored for ttl_ms', async (t) => {
  t.equal((await invoke('plain')).headers['x-sluice-cache'], 'miss');
  const again = await invoke('plain');
  t.equal(again.headers['x-sluice-cache'], 'hit');
  t.equal(again.body, '{"predictions":["plain",1]}');
  t.equal(calls.get('plain'), 1);
});

for (const kind of ['nostore', 'private', 'nostore_mixed']) {
  t.test(`Cache-Control: ${CONTROL[kind]} from the upstream is never stored`, async (t) => {
    const first = await invoke(kind);
    t.equal(first.status, 200);
    t.equal(first.headers['cache-control'], CONTROL[kind], 'the header reaches the client');
    const second = await invoke(kind);
    t.equal(second.headers['x-sluice-cache'], 'miss', 'not a hit on repeat');
    t.equal(second.body, `{"predictions":["${kind}",2]}`, 'a fresh answer from the upstream');
    t.equal(calls.get(kind), 2);
  });
}

t.test('a max-age shorter than ttl_ms is honoured', async (t) => {
  t.equal((await invoke('short')).headers['x-sluice-cache'], 'miss');
  t.equal((await invoke('short')).headers['x-sluice-cache'], 'hit', 'stored while fresh');
  await sleep(1_500);
  const late = await invoke('short');
  t.equal(late.headers['x-sluice-cache'], 'miss', 'expired after max-age=1, not ttl_ms');
  t.equal(late.body, '{"predictions":["short",2]}');
  t.equal(calls.get('short'), 2);
});

t.test('s-maxage wins over max-age for the shared cache', async (t) => {
  t.equal((await invoke('smaxage')).headers['x-sluice-cache'], 'miss');
  t.equal((await invoke('smaxage')).headers['x-sluice-cache'], 'hit');
  await sleep(1_500);
  t.equal((await invoke('smaxage')).headers['x-sluice-cache'], 'miss', 'expired after s-maxage=1');
  t.equal(calls.get('smaxage'), 2);
});

t.test('a max-age longer than ttl_ms keeps ttl_ms', async (t) => {
  t.equal((await invoke('long')).headers['x-sluice-cache'], 'miss');
  await sleep(1_500);
  t.equal((await invoke('long')).headers['x-sluice-cache'], 'hit');
  t.equal(calls.get('long'), 1);
});

t.test('storableForMs: the lifetime the upstream allows, in ms (0: not stored)', async (t) => {
  t.equal(storableForMs(['content-type', 'application/json'], 60_000, []), 60_000, 'no Cache-Control: ttl_ms');
  t.equal(storableForMs(['Cache-Control', 'no-store'], 60_000, []), 0);
  t.equal(storableForMs(['cache-control', 'public', 'CACHE-CONTROL', 'Private="set-cookie"'], 60_000, []), 0, 'over several lines, any case');
  t.equal(storableForMs(['cache-control', 'max-age=5'], 60_000, []), 5_000);
  t.equal(storableForMs(['cache-control', 'max-age="5"'], 60_000, []), 5_000, 'quoted');
  t.equal(storableForMs(['cache-control', 's-maxage=2, max-age=5'], 60_000, []), 2_000, 's-maxage wins');
  t.equal(storableForMs(['cache-control', 'max-age=5, s-maxage=20'], 60_000, []), 20_000, 's-maxage wins even when longer');
  t.equal(storableForMs(['cache-control', 'max-age=3600'], 60_000, []), 60_000, 'never beyond ttl_ms');
  t.equal(storableForMs(['cache-control', 'max-age=10', 'age', '4'], 60_000, []), 6_000, 'less its Age');
  t.equal(storableForMs(['cache-control', 'max-age=10', 'Age', '40'], 60_000, []), 0, 'already stale');
  t.equal(storableForMs(['cache-control', 'max-age=0'], 60_000, []), 0);
  t.equal(storableForMs(['cache-control', 'max-age=soon'], 60_000, []), 0, 'an invalid max-age is stale');
  t.equal(storableForMs(['cache-control', 'no-cache'], 60_000, []), 60_000, 'no-cache is not acted on (SSE servers send it)');
  t.equal(storableForMs(['Vary', 'Accept-Encoding'], 60_000, ['authorization']), 0, 'varies on a header the key does not hold');
  t.equal(storableForMs(['vary', '*'], 60_000, ['authorization']), 0, 'Vary: *');
  t.equal(storableForMs(['vary', 'Authorization, X-Lang'], 60_000, ['authorization', 'x-lang']), 60_000, 'varies only on keyed headers');
});
