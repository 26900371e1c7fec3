// A fallback's answer is stored under the addressed deployment's key; a hit on it is still
// the fallback's answer, and says so (`x-sluice-served-by`), as the miss that stored it and
// the identical requests that shared its call do. (The hit said nothing, as if the addressed
// deployment had answered.) A server's own x-sluice-served-by is no such claim: stored with
// the addressed deployment's answer, its hits carry none.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 22930-22934 belong to this file (one sim replica).

/** Answers 503 at once: its deployment hands every request to its fallback. */
const broken: Server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"message":"overloaded"}}'));
});
/** Answers itself, claiming in a header of the gateway's to be another deployment. */
const claims: Server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'x-sluice-served-by': 'other-1' }).end('{"choices":[{"message":{"content":"mine"}}]}'));
});
let gw: Gateway;

t.before(async () => {
  await Promise.all([broken, claims].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const url = (s: Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  gw = await startGateway({
    ports: { from: 22930, to: 22934 },
    deployments: [
      { model: 'main', version: '1', runtime: 'remote', urls: [url(broken)], health_check: { enabled: false }, fallbacks: ['fb-1'] },
      { model: 'fb', version: '1', runtime: 'sim', args: ['--ttft-ms', '1', '--tokens', '2'] },
      { model: 'own', version: '1', runtime: 'remote', urls: [url(claims)], health_check: { enabled: false }, fallbacks: ['fb-1'] },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  broken.close();
  claims.close();
});

function chat(model: string): Promise<Reply> {
  return httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model, temperature: 0, messages: [{ role: 'user', content: 'the same' }] }),
    headers: { 'content-type': 'application/json' },
  });
}

t.test('a hit on an answer a fallback gave names the fallback', async (t) => {
  const miss = await chat('main-1');
  t.equal(miss.status, 200, miss.body);
  t.equal(miss.headers['x-sluice-cache'], 'miss');
  t.equal(miss.headers['x-sluice-served-by'], 'fb-1');
  const hit = await chat('main-1');
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  t.equal(hit.body, miss.body, 'the stored answer');
  t.equal(hit.headers['x-sluice-served-by'], 'fb-1', 'the hit says who made it');
});

t.test('a server\'s own x-sluice-served-by is neither sent nor stored as the gateway\'s', async (t) => {
  const miss = await chat('own-1');
  t.equal(miss.status, 200, miss.body);
  t.equal(miss.headers['x-sluice-cache'], 'miss');
  t.equal(miss.headers['x-sluice-served-by'], undefined, 'own-1 answered itself');
  const hit = await chat('own-1');
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  t.equal(hit.headers['x-sluice-served-by'], undefined, 'nor does its hit name another');
});
