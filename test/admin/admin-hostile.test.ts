// The admin port against what a careless client or an attacker sends it: a request target
// that is no URL must cost that request only, never the gateway process (which holds every
// worker and the model servers' supervision); and a web page open in a browser on the
// gateway's machine must not drive a tokenless admin API (CSRF, DNS rebinding).

import { connect } from 'node:net';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24000-24009 belong to this file: 24000 the gateway, 24001 its admin API (the first
// test); 24002/24003 and 24004/24005 the same for the two gateways of the others; 24006-24008
// model servers; 24009 a remote replica nothing serves (its checks are off).
const GATEWAY_PORT = 24000;
const ADMIN_PORT = 24001;

/** Sends `raw` on a new connection and returns what comes back until the server closes it (or 3 s). */
function rawExchange(port: number, raw: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(raw, 'latin1'));
    let got = '';
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, 3_000);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('close', done);
    socket.on('error', done);
  });
}

t.test('a request target that is not a URL gets a 400, and the gateway goes on', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    ports: { from: 24006, to: 24008 },
    deployments: [],
  });
  t.teardown(() => gw.stop());
  let exited = false;
  gw.child.once('exit', () => (exited = true));

  for (const target of ['http://[', '//[/v1/keys', 'http://x:99999/v1/deployments']) {
    const answer = await rawExchange(ADMIN_PORT, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    t.match(answer, /^HTTP\/1\.1 400 /, `${target}: 400`);
    t.match(answer, /SLUICE_ERR_BAD_REQUEST/, `${target}: the gateway's error body`);
  }
  const health = await adminClient(gw.adminUrl).get('/healthz');
  t.equal(health.status, 200, 'the admin API still answers');
  t.notOk(exited, 'the gateway process is still running');
});

/** A remote deployment that starts nothing: what a page would deploy, minus the command. */
const SPEC = (version: string): string => JSON.stringify({ model: 'csrf', version, runtime: 'remote', urls: ['http://127.0.0.1:24009'], health_check: { enabled: false } });

t.test('without a token, what a browser sends for another site\'s page or another name is refused', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24002 },
    admin: { host: '127.0.0.1', port: 24003 },
    ports: { from: 24006, to: 24008 },
    deployments: [],
  });
  t.teardown(() => gw.stop());
  const url = `${gw.adminUrl}/v1/deployments`;
  // What fetch(url, {method: 'POST', mode: 'no-cors', body}) sends from a page on evil.example.
  const page = { 'content-type': 'text/plain;charset=UTF-8', origin: 'http://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' };
  const refusals: Array<[string, Record<string, string>]> = [
    ['a page of another site', page],
    ['an Origin of another site (a browser without Sec-Fetch-*)', { 'content-type': 'text/plain', origin: 'http://evil.example' }],
    ['a sandboxed frame or a file:// page (Origin: null)', { origin: 'null' }],
    ['another site of the same machine (same-site)', { origin: 'http://localhost:3000', 'sec-fetch-site': 'same-site' }],
    ['a name that is not this server (DNS rebinding)', { host: 'rebind.evil.example:24003', origin: 'http://rebind.evil.example:24003', 'sec-fetch-site': 'same-origin' }],
  ];
  for (const [what, headers] of refusals) {
    const r = await httpRequest(url, { method: 'POST', headers, body: SPEC('1') });
    t.equal(r.status, 403, `${what}: 403`);
    t.match(r.body, /SLUICE_ERR_FORBIDDEN/, what);
  }
  const read = await httpRequest(`${gw.adminUrl}/v1/keys`, { headers: { host: 'rebind.evil.example:24003' } });
  t.equal(read.status, 403, 'a rebound name reads nothing either');
  const admin = adminClient(gw.adminUrl);
  t.same((await admin.list()).map((d) => d.id), [], 'nothing was deployed');

  const curl = await httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: SPEC('1') });
  t.equal(curl.status, 201, `curl -d, as the README's examples: ${curl.body}`);
  const dashboard = await httpRequest(url, {
    method: 'POST', headers: { 'content-type': 'application/json', origin: gw.adminUrl, 'sec-fetch-site': 'same-origin' }, body: SPEC('2'),
  });
  t.equal(dashboard.status, 201, `the dashboard's own page: ${dashboard.body}`);
  t.equal((await httpRequest(`${gw.adminUrl.replace('127.0.0.1', 'localhost')}/v1/deployments`)).status, 200, 'localhost is this server');
  t.equal((await httpRequest(`${gw.adminUrl}/healthz`, { headers: { host: 'rebind.evil.example:24003' } })).status, 200, 'the public endpoints answer any name (probes)');
  const doc = JSON.parse((await httpRequest(`${gw.adminUrl}/openapi.json`)).body) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
  t.ok(doc.paths['/v1/deployments']?.post?.responses['403'], 'the API document lists the 403');
  t.notOk(doc.paths['/healthz']?.get?.responses['403'], 'but not on the public endpoints');
});

t.test('with a token, a page of another site is refused even with it, and any Host is fine', async (t) => {
  const token = 'admin-hostile-test-token';
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24004 },
    admin: { host: '127.0.0.1', port: 24005 },
    ports: { from: 24006, to: 24008 },
    deployments: [],
  }, { SLUICE_ADMIN_TOKEN: token });
  t.teardown(() => gw.stop());
  const auth = { authorization: `Bearer ${token}` };
  const behindProxy = await httpRequest(`${gw.adminUrl}/v1/deployments`, { headers: { ...auth, host: 'sluice.example.com' } });
  t.equal(behindProxy.status, 200, 'a name given by a proxy in front');
  const viaProxy = await httpRequest(`${gw.adminUrl}/v1/deployments`, {
    method: 'POST', headers: { ...auth, 'content-type': 'application/json', host: 'backend:24005', 'x-forwarded-host': 'sluice.example.com', origin: 'https://sluice.example.com' }, body: SPEC('3'),
  });
  t.equal(viaProxy.status, 201, `the dashboard behind a proxy that sets X-Forwarded-Host: ${viaProxy.body}`);
  const cross = await httpRequest(`${gw.adminUrl}/v1/deployments`, { method: 'POST', headers: { ...auth, origin: 'http://evil.example' }, body: SPEC('4') });
  t.equal(cross.status, 403, 'another site\'s Origin');
});
