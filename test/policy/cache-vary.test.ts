// The cache key holds what an answer depends on: the policy's `vary` headers also when
// callers share entries (shared_across_callers).

import t from 'tap';
import { createServer, type Server } from 'node:http';
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
      const body = JSON.stringify({ lang: req.headers['x-lang'] ?? null, n: calls });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }).end(body);
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
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

function invoke(deployment: string, headers: Record<string, string>): Promise<Reply> {
  return httpRequest(`${gw.url}/${deployment}/invocations`, { method: 'POST', body: '{"inputs": [1]}', headers: { 'content-type': 'application/json', ...headers } });
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
