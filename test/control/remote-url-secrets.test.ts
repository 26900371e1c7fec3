// A remote deployment's URL may carry a password and a key in its query: the admin views
// (GET /v1/deployments, /v1/deployments/{id}, the events stream) show both as `***`, as
// config errors do, while the gateway keeps the whole URL and still reaches the server.

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
const URL_WITH_SECRETS = `http://ruser:RPW-secret@127.0.0.1:${REMOTE_PORT}/?k=QK-secret`;
const SHOWN = `http://ruser:***@127.0.0.1:${REMOTE_PORT}/?***`;

t.test('a remote URL\'s password and query are masked in the admin views', async (t) => {
  // A real server for the remote replica: its health check and a proxied request reach it.
  const remote: Server = createServer((req, res) => {
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

  const created = await admin.post('/v1/deployments', { model: 'rem', version: '1', runtime: 'remote', urls: [URL_WITH_SECRETS] });
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
});
