// A connect that never completes reached no model: like a refused one, the request goes to
// another replica or to a fallback (within the retry budget) instead of a 504. And a request
// waiting for one of the gateway's own connections to a replica (upstream.max_connections
// all in use) waits as in a queue: its wait is not the replica failing.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric, hangingListener, type Listener } from '../helpers/policy.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Model-server ports 19360-19369 belong to this file (its deployments are remote: none is used).
const CONNECT = 300;
let hanging: Listener;
let good: Server;
let narrow: Server;
let narrowq: Server;
const bodies: string[] = [];
let gw: Gateway;

/** A server that answers after ?delay= ms, with the body it got. */
async function answering(): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies.push(body);
      const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ got: body })), delay);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

const urlOf = (server: Server): string => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

t.before(async () => {
  hanging = await hangingListener();
  good = await answering();
  const goodUrl = urlOf(good);
  narrow = await answering();
  narrowq = await answering();
  const remote = { runtime: 'remote', health_check: { enabled: false } };
  gw = await startGateway({
    ports: { from: 19360, to: 19369 },
    log: { level: 'info', access: false },
    deployments: [
      { ...remote, model: 'pair', version: '1', urls: [hanging.url, goodUrl], upstream: { connect_timeout_ms: CONNECT }, policies: { balancer: { strategy: 'round_robin' } } },
      { ...remote, model: 'lone', version: '1', urls: [hanging.url], upstream: { connect_timeout_ms: CONNECT }, fallbacks: ['fb-1'] },
      { ...remote, model: 'fb', version: '1', urls: [goodUrl] },
      // Two connections per worker to its one replica; connects themselves are quick.
      // Another deployment on narrow's server, listed first, with the default 512 connections: each keeps its own limit.
      { ...remote, model: 'wide', version: '1', urls: [urlOf(narrow)] },
      { ...remote, model: 'narrow', version: '1', urls: [urlOf(narrow)], upstream: { max_connections: 2, connect_timeout_ms: CONNECT } },
      { ...remote, model: 'narrowq', version: '1', urls: [urlOf(narrowq)], upstream: { max_connections: 1, connect_timeout_ms: CONNECT }, policies: { queue: { max_wait_ms: 400 } } },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  await hanging?.close();
  for (const server of [good, narrow, narrowq]) server?.close();
});

t.test('a connect timeout goes to the other replica, the body intact, no 504', async (t) => {
  const before = bodies.length;
  const replies: Reply[] = [];
  // Round robin: every other request is first sent to the replica whose connects hang.
  for (let i = 0; i < 4; i++) replies.push(await httpRequest(`${gw.url}/pair-1/v1/completions`, { method: 'POST', body: `{"prompt":"p${i}"}`, timeoutMs: 10_000 }));
  t.same(replies.map((r) => r.status), [200, 200, 200, 200], replies.map((r) => r.body).join(' '));
  t.same(replies.map((r) => JSON.parse(r.body).got), ['{"prompt":"p0"}', '{"prompt":"p1"}', '{"prompt":"p2"}', '{"prompt":"p3"}'], 'each body reached the good replica whole');
  t.equal(bodies.length - before, 4, 'once each');
  t.ok(await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'pair-1', code: 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT' }) >= 1, 'the timed-out connects are counted');
});

t.test('a connect timeout on a deployment\'s only replica goes to its fallback', async (t) => {
  const r = await httpRequest(`${gw.url}/lone-1/v1/completions`, { method: 'POST', body: '{"prompt":"x"}', timeoutMs: 10_000 });
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'fb-1', 'served by the fallback');
});

t.test('requests over upstream.max_connections wait for a connection, past connect_timeout_ms, and the replica stays trusted', async (t) => {
  // Four at once through two connections, each answer 700 ms: two wait ~700 ms for a connection (> 300 ms connect timeout).
  const started = performance.now();
  const replies = await Promise.all([0, 1, 2, 3].map((i) => httpRequest(`${gw.url}/narrow-1/x?delay=700&i=${i}`, { timeoutMs: 10_000 })));
  t.same(replies.map((r) => r.status), [200, 200, 200, 200], replies.map((r) => r.body).join(' '));
  t.ok(performance.now() - started >= 1_300, 'two at a time: the last two waited for the first two\'s connections');
  t.equal(await gwMetric(gw, 'sluice_upstream_errors_total', { deployment: 'narrow-1', code: 'SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT' }, { absent: 0 }), 0, 'no wait counted as a connect timeout');
});

t.test('a wait for a connection longer than queue.max_wait_ms: 503 SLUICE_ERR_QUEUE_TIMEOUT, never the replica\'s failure', async (t) => {
  const replies = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => httpRequest(`${gw.url}/narrowq-1/x?delay=1200&i=${i}`, { timeoutMs: 10_000 })));
  const refused = replies.filter((r) => r.status === 503);
  t.equal(replies.filter((r) => r.status === 200).length, 1, 'one request had the connection');
  t.equal(refused.length, 5, 'the others waited 400 ms for it');
  for (const r of refused) {
    t.equal(errorOf(r)?.code, 'SLUICE_ERR_QUEUE_TIMEOUT');
    t.match(errorOf(r)?.message, /max_connections/, 'naming the limit');
    t.ok(r.headers['retry-after'] !== undefined, 'with Retry-After');
  }
  t.equal(await gwMetric(gw, 'sluice_breaker_opens_total', { deployment: 'narrowq-1' }, { absent: 0 }), 0, 'the breaker did not open');
  const after = await httpRequest(`${gw.url}/narrowq-1/x`);
  t.equal(after.status, 200, 'the next request is served');
});
