// Client API keys: a deployment with `auth.required` refuses requests without a valid key
// (401, with WWW-Authenticate) and keys not allowed for it (403); a valid key is accepted as
// `Authorization: Bearer` or `x-api-key`, given in config as the key or only its SHA-256.
// A sluice key is consumed by the gateway, never forwarded upstream, and never appears in
// its logs or metrics; credentials that are not sluice keys pass through unchanged.

import { createHash } from 'node:crypto';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric } from '../helpers/policy.js';
import { metricsText, replicaPorts, simStats, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18780-18789 belong to this file (test/policy uses 18700-18799).
const FULL = 'sk-full-0123456789abcdef-FULLKEY';
const NARROW = 'sk-narrow-0123456789abcd-NARROWKEY';
const HASHED = 'sk-hashed-0123456789abcd-HASHEDKEY';
const WRONG = 'sk-wrong-0123456789abcdef-WRONGKEY';
const UPSTREAM_TOKEN = 'Bearer upstream-own-token-777';
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18780, to: 18789 },
    // Debug level and the access log on: the most a log could ever show.
    log: { level: 'debug', access: true },
    api_keys: [
      { name: 'full', key: FULL, deployments: ['*'] },
      // By model name: every version of `pub`, nothing else.
      { name: 'narrow', key: NARROW, deployments: ['pub'] },
      { name: 'hashed', key_sha256: createHash('sha256').update(HASHED).digest('hex'), deployments: ['sec-1'] },
    ],
    deployments: [
      { model: 'sec', version: '1', runtime: 'sim', policies: { auth: { required: true } } },
      { model: 'pub', version: '1', runtime: 'sim' },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], { from: 18780, to: 18789 });
});

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
}
const echoOf = (r: Reply): Echo => JSON.parse(r.body) as Echo;

t.test('auth.required: no key or a wrong key is 401, a key not allowed here is 403', async (t) => {
  const [port] = (await replicaPorts(gw, 'sec-1')) as [number];
  const before = (await simStats(port)).requests;

  const none = await httpRequest(`${gw.url}/sec-1/_sim/echo`);
  t.equal(none.status, 401, 'no key: 401');
  t.match(none.headers['content-type'], /application\/json/);
  t.equal(errorOf(none)?.code, 'SLUICE_ERR_UNAUTHORIZED');
  t.equal(none.headers['www-authenticate'], 'Bearer', 'with WWW-Authenticate: Bearer');
  t.equal(errorOf(none)?.request_id, none.headers['x-request-id']);

  const wrong = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Bearer ${WRONG}` } });
  t.equal(wrong.status, 401, 'wrong key: 401');
  t.equal(errorOf(wrong)?.code, 'SLUICE_ERR_UNAUTHORIZED');
  t.notOk(wrong.body.includes(WRONG), 'the error does not echo the key');
  const wrongX = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { 'x-api-key': WRONG } });
  t.equal(wrongX.status, 401, 'wrong key in x-api-key: 401');
  const notBearer = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Basic ${Buffer.from(`u:${FULL}`).toString('base64')}` } });
  t.equal(notBearer.status, 401, 'a Basic credential is not a key: 401');

  const narrow = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Bearer ${NARROW}` } });
  t.equal(narrow.status, 403, 'a key scoped to another model: 403');
  t.equal(errorOf(narrow)?.code, 'SLUICE_ERR_FORBIDDEN');
  t.notOk(narrow.body.includes(NARROW));
  const hashedElsewhere = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { 'x-api-key': HASHED } });
  t.equal(hashedElsewhere.status, 200, 'a deployment that needs no key refuses none, even one scoped elsewhere (SDKs always send one)');
  t.notOk(hashedElsewhere.body.includes(HASHED), 'and the sluice key is still not forwarded');

  // A refused upload: answered at once, body unread.
  const upload = await httpRequest(`${gw.url}/sec-1/_sim/upload`, { method: 'POST', body: Buffer.alloc(256 * 1024, 1) });
  t.equal(upload.status, 401, 'a refused upload gets its 401');

  t.equal((await simStats(port)).requests, before, 'none of them reached the replica');
  t.equal(await gwMetric(gw, 'sluice_requests_total', { deployment: 'sec-1', code: '401' }), 5, 'the 401s are counted for the deployment');
});

t.test('the right key is accepted in either form, and never forwarded', async (t) => {
  const bearer = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Bearer ${FULL}` } });
  t.equal(bearer.status, 200, 'Authorization: Bearer <key>');
  t.notOk('authorization' in echoOf(bearer).headers, 'the upstream got no Authorization header');
  const lower = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `bearer ${FULL}` } });
  t.equal(lower.status, 200, 'the scheme is case-insensitive');
  const x = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { 'x-api-key': FULL } });
  t.equal(x.status, 200, 'x-api-key: <key>');
  t.notOk('x-api-key' in echoOf(x).headers, 'the upstream got no x-api-key header');
  const hashed = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Bearer ${HASHED}` } });
  t.equal(hashed.status, 200, 'a key configured only by its key_sha256');
  t.notOk(JSON.stringify(echoOf(hashed).headers).includes(HASHED), 'and it is not forwarded either');
  const narrow = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { authorization: `Bearer ${NARROW}` } });
  t.equal(narrow.status, 200, 'a key scoped by model name works on that model');
  t.notOk('authorization' in echoOf(narrow).headers, 'consumed on an unprotected deployment too');
  // Streaming generation with a key works end to end.
  const gen = await httpRequest(`${gw.url}/sec-1/api/generate`, { method: 'POST', headers: { 'x-api-key': FULL }, body: '{"model":"demo","prompt":"hi"}' });
  t.equal(gen.status, 200);
  t.ok(gen.body.trim().split('\n').length > 1, 'the stream came through');
});

t.test('credentials that are not sluice keys reach an unprotected deployment unchanged', async (t) => {
  const r = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { authorization: UPSTREAM_TOKEN } });
  t.equal(r.status, 200);
  t.equal(echoOf(r).headers.authorization, UPSTREAM_TOKEN, 'Authorization forwarded byte for byte');
  const x = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { 'x-api-key': 'provider-key-abc' } });
  t.equal(echoOf(x).headers['x-api-key'], 'provider-key-abc', 'a foreign x-api-key too');
  const none = await httpRequest(`${gw.url}/pub-1/_sim/echo`);
  t.equal(none.status, 200, 'no key needed there');
});

t.test('a sluice key beside a provider\'s credential: the key is consumed, the credential forwarded', async (t) => {
  // The sluice key as the bearer token, a provider's key in x-api-key.
  const a = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Bearer ${FULL}`, 'x-api-key': 'provider-key-abc' } });
  t.equal(a.status, 200, 'the bearer token is the key, though x-api-key is there too');
  t.notOk('authorization' in echoOf(a).headers, 'the sluice key is not forwarded');
  t.equal(echoOf(a).headers['x-api-key'], 'provider-key-abc', 'the provider key is');
  // The other way round.
  const b = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { authorization: UPSTREAM_TOKEN, 'x-api-key': FULL } });
  t.equal(b.status, 200);
  t.equal(echoOf(b).headers.authorization, UPSTREAM_TOKEN, 'the provider\'s Authorization is forwarded');
  t.notOk('x-api-key' in echoOf(b).headers, 'the sluice key in x-api-key is not');
});

t.test('a key in sluice\'s own format is never forwarded, known or not (revoked)', async (t) => {
  const revoked = 'sk-sluice-revokedrevokedrevokedrevoked00';
  const r = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { authorization: `Bearer ${revoked}` } });
  t.equal(r.status, 200, 'an unprotected deployment still answers');
  t.notOk('authorization' in echoOf(r).headers, 'the upstream got no Authorization header');
  const x = await httpRequest(`${gw.url}/pub-1/_sim/echo`, { headers: { 'x-api-key': revoked } });
  t.notOk('x-api-key' in echoOf(x).headers, 'nor an x-api-key header');
  const sec = await httpRequest(`${gw.url}/sec-1/_sim/echo`, { headers: { authorization: `Bearer ${revoked}` } });
  t.equal(sec.status, 401, 'and it opens nothing');
});

t.test('no key appears in the logs, the metrics or the admin API', async (t) => {
  await sleep(1200); // worker logs are flushed every second
  const metrics = await metricsText(gw);
  const admin = await (await fetch(`${gw.adminUrl}/v1/deployments`)).text();
  const logs = gw.lines.join('\n');
  t.ok(logs.includes('"request"'), 'the access log was written (the check below means something)');
  for (const [name, key] of Object.entries({ FULL, NARROW, HASHED, WRONG })) {
    t.notOk(logs.includes(key), `${name} is not in the gateway's output`);
    t.notOk(metrics.includes(key), `${name} is not in /metrics`);
    t.notOk(admin.includes(key), `${name} is not in the admin API`);
  }
  t.notOk(logs.includes(createHash('sha256').update(FULL).digest('hex')), 'nor is a full key digest');
  const label = `full#${createHash('sha256').update(FULL).digest('hex').slice(0, 8)}`;
  t.ok(logs.includes(`"key_label":"${label}"`), 'the access log names the key by its name and a short digest');
});
