// Identical requests in flight share one upstream call; when a fallback takes it (the
// addressed deployment answered 503), every client sharing it got the fallback's answer,
// but only the one whose request led said so: the others had no `x-sluice-served-by`, as
// if the addressed deployment had answered them.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19480-19489 belong to this file (its deployments are remote: none is started).

let fallbackCalls = 0;
/** Answers 503 at once: its deployment hands every request to its fallback. */
const broken: Server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"message":"overloaded"}}'));
});
/** Answers after 500 ms, so that the identical requests sent meanwhile join the first one's call. */
const fallback: Server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    fallbackCalls++;
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices":[{"message":{"content":"from the fallback"}}]}'), 500);
  });
});
let gw: Gateway;

t.before(async () => {
  await Promise.all([broken, fallback].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const url = (s: Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  gw = await startGateway({
    ports: { from: 19480, to: 19489 },
    deployments: [
      { model: 'main', version: '1', runtime: 'remote', urls: [url(broken)], health_check: { enabled: false }, fallbacks: ['fb-1'] },
      { model: 'fb', version: '1', runtime: 'remote', urls: [url(fallback)], health_check: { enabled: false } },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  broken.close();
  fallback.close();
});

t.test('every client sharing a call a fallback answered is told who answered', async (t) => {
  // Deterministic (temperature 0): a cache candidate, so identical ones in flight coalesce.
  const body = JSON.stringify({ model: 'main', temperature: 0, messages: [{ role: 'user', content: 'coalesce me' }] });
  const send = (): ReturnType<typeof httpRequest> =>
    httpRequest(`${gw.url}/main-1/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const first = send();
  await new Promise((resolve) => setTimeout(resolve, 150));
  const answers = await Promise.all([first, send(), send(), send()]);
  t.equal(fallbackCalls, 1, 'one call to the fallback for the four');
  for (const [i, r] of answers.entries()) {
    t.equal(r.status, 200, `request ${i}: 200`);
    t.equal(r.body, '{"choices":[{"message":{"content":"from the fallback"}}]}', `request ${i}: the fallback's answer`);
    t.equal(r.headers['x-sluice-served-by'], 'fb-1', `request ${i}: says the fallback served it`);
  }
});
