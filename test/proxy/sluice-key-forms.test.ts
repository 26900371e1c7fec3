// A token in sluice's own format (sk-sluice-...) never reaches a model server: it was
// forwarded when sent as Azure's SDKs send their key (`api-key`) or as a bare Authorization
// value (no Bearer), though the gateway drops it from Bearer and x-api-key.

import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24080-24089 belong to this file: 24080 the gateway, 24081 its admin API, 24082 the
// remote server, 24083-24089 model servers (none is started).
const UPSTREAM_PORT = 24082;
const SLUICE_TOKEN = 'sk-sluice-0123456789abcdefghijklmnopqrstuv';

t.test('a token in sluice\'s format is never forwarded, whatever header carries it', async (t) => {
  const seen: IncomingHttpHeaders[] = [];
  const upstream: Server = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24080 },
    admin: { host: '127.0.0.1', port: 24081 },
    ports: { from: 24083, to: 24089 },
    deployments: [{ model: 'az', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false } }],
  });
  t.teardown(() => gw.stop());
  const get = async (headers: Record<string, string>): Promise<IncomingHttpHeaders> => {
    const r = await httpRequest(`${gw.url}/az-1/x`, { headers });
    t.equal(r.status, 200);
    return seen.pop()!;
  };

  t.equal((await get({ 'api-key': SLUICE_TOKEN }))['api-key'], undefined, 'api-key: not forwarded');
  t.equal((await get({ authorization: SLUICE_TOKEN }))['authorization'], undefined, 'a bare Authorization: not forwarded');
  t.equal((await get({ authorization: `Bearer ${SLUICE_TOKEN}` }))['authorization'], undefined, 'Bearer: not forwarded (as before)');
  t.equal((await get({ 'api-key': 'azure-provider-key' }))['api-key'], 'azure-provider-key', 'a provider\'s api-key passes');
  t.equal((await get({ authorization: 'Bearer provider-token' }))['authorization'], 'Bearer provider-token', 'a provider\'s bearer token passes');
});
