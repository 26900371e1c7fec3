// Bound to a loopback address, the gateway answers only requests whose Host is local, as
// Ollama's server does: a page whose name its author rebound to 127.0.0.1 (DNS rebinding)
// is same-origin for its browser, so CORS never stops it, and it could call every model
// (and a provider key a deployment holds) and read the answers. Its Host still names it.
// Local names pass: IPs of the machine or its private networks, localhost and
// *.localhost/.local/.internal, the machine's name, any name without a dot, and
// listen.allowed_hosts ('*' turns the guard off). Bound to another address, any Host passes.

import { request as rawHttp } from 'node:http';
import { hostname } from 'node:os';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 23930-23939 belong to this file.

function get(gw: Gateway, host: string, path = '/demo-1/api/tags'): Promise<{ status: number; body: string; id: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = rawHttp({ host: '127.0.0.1', port: gw.port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body, id: res.headers['x-request-id'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('bound to loopback: a rebound name is refused, local names pass', async (t) => {
  const gw = await startGateway({
    ports: { from: 23930, to: 23934 },
    listen: { host: '127.0.0.1', port: 0, allowed_hosts: ['api.example.com'] },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  });
  t.teardown(() => gw.stop());
  for (const host of ['evil.example.com', `evil.example.com:${gw.port}`, 'EVIL.example.com.', '93.184.216.34']) {
    const r = await get(gw, host);
    t.equal(r.status, 403, `${host}: refused`);
    const body = JSON.parse(r.body) as { error: { code: string; message: string; request_id: string } };
    t.equal(body.error.code, 'SLUICE_ERR_FORBIDDEN');
    t.match(body.error.message, /listen\.allowed_hosts/, 'the message names the setting');
    t.equal(body.error.request_id, r.id, 'with its request id');
  }
  const root = await get(gw, 'evil.example.com', '/v1/models');
  t.equal(root.status, 403, 'the front door too');
  for (const host of [`127.0.0.1:${gw.port}`, `localhost:${gw.port}`, `[::1]:${gw.port}`, '10.1.2.3', 'app.localhost', 'host.docker.internal', 'printer.local', hostname(), 'sluice', 'api.example.com', 'API.example.com:443']) {
    t.equal((await get(gw, host)).status, 200, `${host}: served`);
  }
});

t.test('allowed_hosts [\'*\'] turns the guard off; bound to another address there is none', async (t) => {
  const open = await startGateway({
    ports: { from: 23935, to: 23939 },
    listen: { host: '127.0.0.1', port: 0, allowed_hosts: ['*'] },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  });
  try {
    t.equal((await get(open, 'evil.example.com')).status, 200, 'with *: any Host');
  } finally {
    await open.stop();
  }
  const wide = await startGateway({
    ports: { from: 23935, to: 23939 },
    listen: { host: '0.0.0.0', port: 0 },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  });
  t.teardown(() => wide.stop());
  t.equal((await get(wide, 'evil.example.com')).status, 200, 'bound to 0.0.0.0: any Host, as Ollama');
});
