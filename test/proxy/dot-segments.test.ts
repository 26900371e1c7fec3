// A path route is chosen by its first segment, and the rest goes to the replica under its
// URL's path. A `.` or `..` in that rest (as sent, or as %2e) would be resolved by most
// servers to a path outside the deployment's URL: with two deployments on one host
// (Azure's /openai/deployments/<name>), a key scoped to one reached the other. Such paths
// are refused 400; dots inside a segment are not dot segments and pass.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest, rawRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Every port of this file: 19390 (gateway), 19391 (admin), 19392-19399 (replicas: none, the deployments are remote).
let upstream: Server;
const seen: string[] = [];
let gw: Gateway;
let key = '';

t.before(async () => {
  upstream = createServer((req, res) => {
    seen.push(req.url ?? '');
    const body = JSON.stringify({ path: req.url });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/deployments`;
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19390 },
    admin: { host: '127.0.0.1', port: 19391 },
    ports: { from: 19392, to: 19399 },
    deployments: ['a', 'b'].map((m) => ({
      model: `gp${m}`, version: '1', runtime: 'remote', urls: [`${base}/${m}`], health_check: { enabled: false }, policies: { auth: { required: true } },
    })),
  });
  const created = await httpRequest(`${gw.adminUrl}/v1/keys`, { method: 'POST', body: JSON.stringify({ name: 'only-a', deployments: ['gpa'] }), headers: { 'content-type': 'application/json' } });
  key = (JSON.parse(created.body) as { key: string }).key;
});
t.teardown(async () => {
  await gw?.stop();
  upstream?.close();
});

const get = (path: string): ReturnType<typeof rawRequest> =>
  rawRequest(gw.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`);

t.test('a key scoped to gpa cannot climb to gpb\'s path through dot segments', async (t) => {
  t.equal((await get('/gpb-1/chat')).status, 403, 'gpb itself is refused to the key');
  for (const path of ['/gpa-1/../b/chat', '/gpa-1/%2e%2e/b/chat', '/gpa-1/%2E%2e/b/chat', '/gpa-1/.%2e/b/chat', '/gpa-1/./chat', '/gpa-1/%2e/chat', '/gpa-1/x/..']) {
    const before = seen.length;
    const r = await get(path);
    t.equal(r.status, 400, path);
    t.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'SLUICE_ERR_BAD_REQUEST');
    t.equal(seen.length, before, `${path}: nothing reached the upstream`);
  }
});

t.test('dots inside a segment are not dot segments', async (t) => {
  for (const path of ['/gpa-1/v1.2/chat', '/gpa-1/model.bin', '/gpa-1/.../chat', '/gpa-1/.hidden', '/gpa-1/a%2eb']) {
    const r = await get(path);
    t.equal(r.status, 200, path);
    t.equal((JSON.parse(r.body) as { path: string }).path, `/deployments/a${path.slice('/gpa-1'.length)}`, `${path}: forwarded as sent`);
  }
});
