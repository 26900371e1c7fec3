// A deployment's own upstream credential (`auth`): for an OpenAI-compatible provider, the
// gateway adds the key from an environment variable to every request and health check,
// the client's credentials stay behind, and the secret is never in a log line, an admin
// view or a state file.

import { readFileSync, readdirSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18300-18309 belong to this file (its deployments are remote: none is used).
const SECRET = 'sk-test-provider-7f3a9c2e51';
const seen: Array<{ path: string; headers: IncomingHttpHeaders }> = [];
let provider: Server;
let gw: Gateway;

t.before(async () => {
  provider = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    const authorized = req.headers.authorization === `Bearer ${SECRET}` || req.headers['api-key'] === SECRET;
    // The health path, like a provider's /v1/models, answers only with the key.
    if (req.url?.endsWith('/health') && !authorized) {
      res.writeHead(401).end('{"error":"unauthorized"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((r) => provider.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(provider.address() as AddressInfo).port}`;
  gw = await startGateway({
    ports: { from: 18300, to: 18309 },
    log: { level: 'debug', access: true },
    deployments: [
      { model: 'prov', version: '1', runtime: 'remote', urls: [url], auth: { env: 'SLUICE_TEST_PROVIDER_KEY' },
        health_check: { path: '/health', interval_ms: 200, healthy_threshold: 1 } },
      { model: 'azure', version: '1', runtime: 'remote', urls: [`${url}/openai`], auth: { header: 'api-key', env: 'SLUICE_TEST_PROVIDER_KEY', scheme: null } },
      { model: 'plain', version: '1', runtime: 'remote', urls: [url] },
    ],
  }, { SLUICE_TEST_PROVIDER_KEY: SECRET });
});
t.teardown(async () => {
  await gw?.stop();
  provider?.close();
});

function last(path: string): IncomingHttpHeaders {
  const hit = [...seen].reverse().find((s) => s.path === path);
  if (hit === undefined) throw new Error(`the provider saw no ${path}`);
  return hit.headers;
}

t.test('the gateway sends its own key, and the health check that needs it passes', async (t) => {
  const r = await httpRequest(`${gw.url}/prov-1/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  t.equal(r.status, 200, 'routed: the health check passed with the key (it answers 401 without)');
  t.equal(last('/v1/chat/completions').authorization, `Bearer ${SECRET}`);
  t.ok(seen.some((s) => s.path === '/health' && s.headers.authorization === `Bearer ${SECRET}`), 'the health check sent the key');
});

t.test("the client's credentials are not sent to a provider the gateway authenticates", async (t) => {
  const r = await httpRequest(`${gw.url}/prov-1/v1/models`, { headers: { authorization: 'Bearer client-token', 'x-api-key': 'client-key' } });
  t.equal(r.status, 200);
  const h = last('/v1/models');
  t.equal(h.authorization, `Bearer ${SECRET}`, 'the gateway key replaced the client\'s');
  t.equal(h['x-api-key'], undefined, 'the client\'s x-api-key stayed behind');
  // Without `auth`, the client's credentials pass as before.
  await httpRequest(`${gw.url}/plain-1/plain`, { headers: { authorization: 'Bearer client-token' } });
  t.equal(last('/plain').authorization, 'Bearer client-token');
});

t.test('a custom header without a scheme (Azure api-key) replaces the client\'s own', async (t) => {
  const r = await httpRequest(`${gw.url}/azure-1/chat`, { headers: { 'api-key': 'client-value' } });
  t.equal(r.status, 200);
  const h = last('/openai/chat');
  t.equal(h['api-key'], SECRET, 'one api-key header: the gateway\'s, with no scheme');
  t.equal(h.authorization, undefined);
});

t.test('the secret is in no log line, admin view or state file; an unset variable is refused by field', async (t) => {
  const admin = async (method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> => {
    const r = await httpRequest(`${gw.adminUrl}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: r.status, text: r.body };
  };
  const views = await admin('GET', '/v1/deployments');
  t.match(views.text, /"env":"SLUICE_TEST_PROVIDER_KEY"/, 'the view names the variable');
  t.notMatch(views.text, SECRET, 'the view does not hold the secret');
  const deployed = await admin('POST', '/v1/deployments', { model: 'prov', version: '2', runtime: 'remote', urls: ['http://127.0.0.1:1'], auth: { env: 'SLUICE_TEST_PROVIDER_KEY' }, health_check: { enabled: false } });
  t.equal(deployed.status, 201, deployed.text);
  const refused = await admin('POST', '/v1/deployments', { model: 'prov', version: '3', runtime: 'remote', urls: ['http://127.0.0.1:1'], auth: { env: 'SLUICE_TEST_NOT_SET' } });
  t.equal(refused.status, 400);
  t.match(JSON.parse(refused.text), { error: { code: 'SLUICE_ERR_INVALID_FIELD', field: 'auth.env' } });
  const stateDir = join(gw.configFile, '..', 'state');
  const files = readdirSync(stateDir, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
  t.ok(files.some((f) => f.name === 'desired.json'), 'the API deployment was stored');
  for (const f of files) t.notMatch(readFileSync(join(f.parentPath, f.name), 'latin1'), SECRET, `${f.name} does not hold the secret`);
  t.notMatch(gw.lines.join('\n'), SECRET, 'no log line holds the secret (debug level, access log on)');
});
