// A remote deployment's URL may carry a key in its query (Azure's api-version, a provider's
// ?key=): the admin views (GET /v1/deployments, /v1/deployments/{id}, the events stream)
// show it as `***`, as config errors do, while every request and health check sends it. A
// user and password in the URL, which no request would carry, are refused.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { adminClient, waitState } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

// Ports 19740-19749 belong to this file: 19740 the gateway, 19741 its admin API, 19742 the
// remote server, 19743-19749 unused model-server ports.
const GATEWAY_PORT = 19740;
const ADMIN_PORT = 19741;
const REMOTE_PORT = 19742;
const URL_WITH_SECRETS = `http://127.0.0.1:${REMOTE_PORT}/base?k=QK-secret`;
const SHOWN = `http://127.0.0.1:${REMOTE_PORT}/base?***`;

t.test('a remote URL\'s query is masked in the admin views and sent with every request; a password is refused', async (t) => {
  // A real server for the remote replica: its health check and a proxied request reach it.
  const targets: string[] = [];
  const remote: Server = createServer((req, res) => {
    targets.push(req.url ?? '');
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => remote.listen(REMOTE_PORT, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => remote.close(() => resolve())));
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    ports: { from: 19743, to: 19749 },
    log: { level: 'info', access: false },
  });
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);

  const withPassword = await admin.post('/v1/deployments', { model: 'pw', version: '1', runtime: 'remote', urls: [`http://ruser:RPW-secret@127.0.0.1:${REMOTE_PORT}/`] });
  t.equal(withPassword.status, 400, 'a URL with a user and password is refused: it would be sent nowhere');
  t.match(withPassword.text, /urls\[0\].*auth/, 'naming the field and what to use instead');
  t.notMatch(withPassword.text, /RPW-secret/, 'without the password');

  const created = await admin.post('/v1/deployments', { model: 'rem', version: '1', runtime: 'remote', urls: [URL_WITH_SECRETS], health_check: { path: '/health' } });
  t.equal(created.status, 201, created.text);
  t.notMatch(created.text, /RPW-secret|QK-secret/, 'the deploy\'s answer shows no secret');
  const view = await waitState(admin, 'rem-1', 'ready');
  t.equal(view.replicas[0]!.url, SHOWN, 'GET /v1/deployments/{id}: password and query masked');
  const list = await admin.get('/v1/deployments');
  t.notMatch(list.text, /RPW-secret|QK-secret/, 'GET /v1/deployments shows no secret');
  t.match(list.text, SHOWN, 'but the masked URL');

  const stream = await fetch(`${gw.adminUrl}/v1/events/stream?seconds=1`);
  t.equal(stream.status, 200);
  const events = await stream.text();
  t.match(events, /event: deployments/, 'the stream sent the deployments');
  t.notMatch(events, /RPW-secret|QK-secret/, 'the events stream shows no secret');
  t.match(events, SHOWN, 'but the masked URL');

  t.equal((await httpRequest(`${gw.url}/rem-1/anything`)).status, 200, 'the gateway still reaches the remote server');
  t.equal((await httpRequest(`${gw.url}/rem-1/v1/chat?x=1&k=client`)).status, 200);
  t.same(targets.slice(-2), ['/base/anything?k=QK-secret', '/base/v1/chat?k=QK-secret&x=1&k=client'], 'the URL\'s query goes first in every request\'s');
  t.ok(targets.includes('/base/health?k=QK-secret'), `the health check sent it too (${targets[0]})`);
});
