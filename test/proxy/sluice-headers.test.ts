// The x-sluice-* response headers are the gateway's word (which version answered, which
// fallback, whether the cache did): a server's own of those names reached the client beside
// the gateway's, first, so a client or a canary check read the server's.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24070-24079 belong to this file: 24070 the gateway, 24071 its admin API, 24072 the
// remote server, 24073-24079 model servers (none is started).
const UPSTREAM_PORT = 24072;

/** Every value of header `name` in a response's raw header list. */
function values(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

t.test('a server\'s own x-sluice-* headers are dropped, the gateway\'s sent once', async (t) => {
  const upstream: Server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'x-sluice-version': '99', 'x-sluice-served-by': 'evil-1', 'x-sluice-cache': 'hit', 'x-other': 'kept' }).end('ok');
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24070 },
    admin: { host: '127.0.0.1', port: 24071 },
    ports: { from: 24073, to: 24079 },
    deployments: [{ model: 'hd', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false } }],
  });
  t.teardown(() => gw.stop());

  const alias = await httpRequest(`${gw.url}/hd/x`);
  t.equal(alias.status, 200);
  t.same(values(alias.rawHeaders, 'x-sluice-version'), ['1'], 'the alias: the gateway\'s version, once');
  t.same(values(alias.rawHeaders, 'x-sluice-served-by'), [], 'no served-by: the addressed deployment answered');
  t.same(values(alias.rawHeaders, 'x-sluice-cache'), ['bypass'], 'the gateway\'s cache status, once');
  t.same(values(alias.rawHeaders, 'x-other'), ['kept'], 'the server\'s other headers pass');
  const pinned = await httpRequest(`${gw.url}/hd-1/x`);
  t.same(values(pinned.rawHeaders, 'x-sluice-version'), [], 'a pinned route: none');
  t.same(values(pinned.rawHeaders, 'x-sluice-served-by'), []);
});
