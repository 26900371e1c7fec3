// The cache key holds what an answer depends on: the policy's `vary` headers also when
// callers share entries (shared_across_callers); and an answer whose `Vary` names a
// request header the key does not hold (an upstream that gzips for clients that accept
// it) is not stored, so it never reaches a client that sent another value.

import t from 'tap';
import { createServer, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Every port of this file: 19410 (the upstream), 19411 (gateway), 19412 (admin), 19413-19415 (replicas: none spawned).
const UPSTREAM_PORT = 19410;
let gw: Gateway;
let upstream: Server;
let calls = 0;

t.before(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      calls++;
      const body = Buffer.from(JSON.stringify({ lang: req.headers['x-lang'] ?? null, n: calls }));
      // As a compression middleware does: gzip for whoever accepts it, and Vary says so.
      if (req.url!.includes('negotiate') && /gzip/.test(req.headers['accept-encoding'] ?? '')) {
        const gz = gzipSync(body);
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', vary: 'Accept-Encoding', 'content-length': String(gz.length) }).end(gz);
        return;
      }
      const vary = req.url!.includes('negotiate') ? { vary: 'Accept-Encoding' } : req.url!.includes('by-lang') ? { vary: 'X-Lang' } : {};
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length), ...vary }).end(body);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  const remote = { runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`] };
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19411 },
    admin: { host: '127.0.0.1', port: 19412 },
    ports: { from: 19413, to: 19415 },
    deployments: [
      { model: 'shared', version: '1', ...remote, policies: { cache: { vary: ['X-Lang'], shared_across_callers: true }, retry: { attempts: 0 } } },
      { model: 'plain', version: '1', ...remote, policies: { cache: { vary: ['X-Lang'] }, retry: { attempts: 0 } } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

function invoke(deployment: string, headers: Record<string, string>, query = ''): Promise<Reply> {
  return httpRequest(`${gw.url}/${deployment}/invocations${query}`, { method: 'POST', body: '{"inputs": [1]}', headers: { 'content-type': 'application/json', ...headers } });
}

t.test('shared_across_callers: true keeps the vary headers in the key', async (t) => {
  const en = await invoke('shared-1', { 'x-lang': 'en', authorization: 'Bearer a' });
  t.equal(en.headers['x-sluice-cache'], 'miss');
  const fr = await invoke('shared-1', { 'x-lang': 'fr', authorization: 'Bearer a' });
  t.equal(fr.headers['x-sluice-cache'], 'miss', 'another x-lang is another entry');
  t.equal(JSON.parse(fr.body).lang, 'fr', 'the French request got the French answer');
  const other = await invoke('shared-1', { 'x-lang': 'en', authorization: 'Bearer b' });
  t.equal(other.headers['x-sluice-cache'], 'hit', 'another caller with the same x-lang shares the entry');
  t.equal(JSON.parse(other.body).lang, 'en');
});

t.test('an answer that varies on a header the key does not hold is not stored', async (t) => {
  const gz = await invoke('plain-1', { 'accept-encoding': 'gzip' }, '?negotiate');
  t.equal(gz.headers['content-encoding'], 'gzip', 'the client that accepts gzip got gzip');
  t.equal(gz.headers['vary'], 'Accept-Encoding');
  const before = calls;
  const identity = await invoke('plain-1', { 'accept-encoding': 'identity' }, '?negotiate');
  t.equal(identity.headers['x-sluice-cache'], 'miss', 'not answered from the gzip entry');
  t.notOk(identity.headers['content-encoding'], 'no gzip for a client that did not accept it');
  t.equal(JSON.parse(identity.body).n, before + 1, 'a fresh answer from the upstream');
  t.equal((await invoke('plain-1', { 'accept-encoding': 'identity' }, '?negotiate')).headers['x-sluice-cache'], 'miss', 'nor stored itself');
  // Varying only on what the key holds (the policy's vary): stored as usual.
  t.equal((await invoke('plain-1', { 'x-lang': 'de' }, '?by-lang')).headers['x-sluice-cache'], 'miss');
  const again = await invoke('plain-1', { 'x-lang': 'de' }, '?by-lang');
  t.equal(again.headers['x-sluice-cache'], 'hit', 'Vary: X-Lang with X-Lang in the key is stored');
  t.equal(JSON.parse(again.body).lang, 'de');
});
