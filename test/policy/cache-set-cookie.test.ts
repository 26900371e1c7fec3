// A response that sets a cookie is one caller's: stored, it was replayed with its
// Set-Cookie to every caller sharing the cache key, two anonymous callers included (their
// identities are alike: no key, no credential), so one got the other's session.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24090-24099 belong to this file: 24090 the gateway, 24091 its admin API, 24092 the
// remote server, 24093-24099 model servers (none is started).
const UPSTREAM_PORT = 24092;

t.test('an answer with Set-Cookie is not stored, so no caller gets another\'s cookie', async (t) => {
  let n = 0;
  const upstream: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': `session=${String(req.headers['x-user'])}-${n}; HttpOnly` }).end(`{"predictions":[${n}]}`);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
  const remote = { runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false } };
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24090 },
    admin: { host: '127.0.0.1', port: 24091 },
    ports: { from: 24093, to: 24099 },
    deployments: [
      { model: 'anon', version: '1', ...remote },
      { model: 'shared', version: '1', ...remote, policies: { cache: { shared_across_callers: true } } },
    ],
  });
  t.teardown(() => gw.stop());

  for (const id of ['anon-1', 'shared-1']) {
    const ask = (user: string) => httpRequest(`${gw.url}/${id}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user': user }, body: '{"inputs":[[1,2]]}' });
    const alice = await ask('alice');
    const bob = await ask('bob');
    t.match(String(alice.headers['set-cookie']), /^session=alice-/, `${id}: alice gets hers`);
    t.match(String(bob.headers['set-cookie']), /^session=bob-/, `${id}: bob gets his, not alice's`);
    t.equal(bob.headers['x-sluice-cache'], 'miss', `${id}: not answered from the cache`);
  }
});
