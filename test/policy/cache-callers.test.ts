// The response cache never serves one caller's answer to another: its key holds the
// caller's identity (the sluice API key's name, and a digest of the credentials forwarded
// upstream: Authorization, x-api-key, api-key, Cookie, plus the deployment's `vary`
// headers), and so does coalescing. Sharing across callers is an explicit opt-in.
// `Cache-Control: no-cache` is never answered from the cache, but its answer is stored.
//
// The upstream is a real HTTP server that answers as the caller it sees, the way an
// OpenAI-compatible server answers with the user's own data.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18900-18909 belong to this file (its deployments are remote: none is used).
const ALICE = 'sk-alice-0123456789abcdef-ALICE';
const BOB = 'sk-bob-0123456789abcdef-BOBKEY';
let gw: Gateway;
let upstream: Server;
let calls = 0;

/** Answers a chat completion naming the credentials it was sent, after `x-delay-ms`. */
function answer(req: IncomingMessage, res: ServerResponse): void {
  let body = '';
  req.on('data', (c: Buffer) => {
    body += c.toString();
  });
  req.on('end', () => {
    const n = ++calls;
    const delay = Number(req.headers['x-delay-ms'] ?? 0);
    setTimeout(() => {
      const who = {
        authorization: req.headers.authorization ?? null, x_api_key: req.headers['x-api-key'] ?? null,
        api_key: req.headers['api-key'] ?? null, cookie: req.headers.cookie ?? null, tenant: req.headers['x-tenant'] ?? null,
      };
      const out = JSON.stringify({ id: `chatcmpl-${n}`, object: 'chat.completion', call: n, who, choices: [{ index: 0, message: { role: 'assistant', content: `hello #${n}` }, finish_reason: 'stop' }], request: body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    }, delay);
  });
}

t.before(async () => {
  upstream = createServer(answer);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gw = await startGateway({
    ports: { from: 18900, to: 18909 },
    log: { level: 'info', access: false },
    api_keys: [
      { name: 'alice', key: ALICE, deployments: ['*'] },
      { name: 'bob', key: BOB, deployments: ['*'] },
    ],
    deployments: [
      { model: 'priv', version: '1', runtime: 'remote', urls: [url] },
      { model: 'pub', version: '1', runtime: 'remote', urls: [url], policies: { cache: { shared_across_callers: true } } },
      { model: 'vary', version: '1', runtime: 'remote', urls: [url], policies: { cache: { vary: ['X-Tenant'] } } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
});

/** A deterministic chat completion (temperature 0: a cache candidate by default). */
function chat(deployment: string, headers: Record<string, string> = {}, content = 'hi'): Promise<Reply> {
  const body = JSON.stringify({ model: 'm', temperature: 0, messages: [{ role: 'user', content }] });
  return httpRequest(`${gw.url}/${deployment}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}

interface Answer {
  call: number;
  who: { authorization: string | null; x_api_key: string | null; api_key: string | null; cookie: string | null; tenant: string | null };
}
const parsed = (r: Reply): Answer => JSON.parse(r.body) as Answer;

t.test('a forwarded Authorization is part of the key: user B and an anonymous caller never get user A\'s answer', async (t) => {
  const a1 = await chat('priv-1', { authorization: 'Bearer user-A' }, 'auth');
  t.equal(a1.status, 200);
  t.equal(a1.headers['x-sluice-cache'], 'miss');
  t.equal(parsed(a1).who.authorization, 'Bearer user-A', 'the upstream saw A\'s credential');
  const a2 = await chat('priv-1', { authorization: 'Bearer user-A' }, 'auth');
  t.equal(a2.headers['x-sluice-cache'], 'hit', 'the same caller is served from the cache');
  t.equal(parsed(a2).call, parsed(a1).call);

  const b = await chat('priv-1', { authorization: 'Bearer user-B' }, 'auth');
  t.equal(b.headers['x-sluice-cache'], 'miss', 'another credential is another entry');
  t.equal(parsed(b).who.authorization, 'Bearer user-B', 'B gets an answer made for B');
  const anon = await chat('priv-1', {}, 'auth');
  t.equal(anon.headers['x-sluice-cache'], 'miss', 'no credential at all is not A either');
  t.equal(parsed(anon).who.authorization, null);
  t.equal((await chat('priv-1', {}, 'auth')).headers['x-sluice-cache'], 'hit', 'anonymous callers share their own entry');
  const b2 = await chat('priv-1', { authorization: 'Bearer user-B' }, 'auth');
  t.equal(b2.headers['x-sluice-cache'], 'hit');
  t.equal(parsed(b2).who.authorization, 'Bearer user-B');
});

t.test('x-api-key, api-key and Cookie tell callers apart too', async (t) => {
  for (const name of ['x-api-key', 'api-key', 'cookie']) {
    const one = await chat('priv-1', { [name]: 'caller-one' }, name);
    t.equal(one.headers['x-sluice-cache'], 'miss', `${name}: first caller`);
    t.equal((await chat('priv-1', { [name]: 'caller-one' }, name)).headers['x-sluice-cache'], 'hit', `${name}: same caller again`);
    const two = await chat('priv-1', { [name]: 'caller-two' }, name);
    t.equal(two.headers['x-sluice-cache'], 'miss', `${name}: another value is another caller`);
    t.not(parsed(two).call, parsed(one).call);
  }
});

t.test('a sluice API key is the caller: its name is part of the key', async (t) => {
  const a1 = await chat('priv-1', { authorization: `Bearer ${ALICE}` }, 'keys');
  t.equal(a1.headers['x-sluice-cache'], 'miss');
  t.equal(parsed(a1).who.authorization, null, 'a sluice key is not forwarded');
  t.equal((await chat('priv-1', { 'x-api-key': ALICE }, 'keys')).headers['x-sluice-cache'], 'hit', 'the same key, presented another way');
  const b = await chat('priv-1', { authorization: `Bearer ${BOB}` }, 'keys');
  t.equal(b.headers['x-sluice-cache'], 'miss', 'another key is another caller, though neither reaches the upstream');
  t.equal((await chat('priv-1', {}, 'keys')).headers['x-sluice-cache'], 'miss', 'nor is an anonymous caller alice');
});

// A key deleted and made anew under its name (for someone else) is another caller: the
// entry was keyed by the name alone, so the new holder got the former one's answers (W8).
t.test('a key made anew under a deleted key\'s name does not find its answers', async (t) => {
  const admin = adminClient(gw.adminUrl);
  const made = await admin.post('/v1/keys', { name: 'temp', deployments: ['*'] });
  t.equal(made.status, 201);
  const first = await chat('priv-1', { authorization: `Bearer ${made.body.key}` }, 'renamed');
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal((await chat('priv-1', { authorization: `Bearer ${made.body.key}` }, 'renamed')).headers['x-sluice-cache'], 'hit', 'its holder is served from the cache');
  t.equal((await admin.del('/v1/keys/temp')).status, 200);
  const again = await admin.post('/v1/keys', { name: 'temp', deployments: ['*'] });
  t.equal(again.status, 201);
  t.not(again.body.key, made.body.key);
  const other = await chat('priv-1', { authorization: `Bearer ${again.body.key}` }, 'renamed');
  t.equal(other.status, 200);
  t.equal(other.headers['x-sluice-cache'], 'miss', 'the new key\'s holder is another caller');
});

// A sluice key in one header and the caller's own provider key in the other (README: "other
// Authorization and x-api-key values pass through to the model server, also beside a sluice
// key"): the one that goes upstream tells callers of one sluice key apart. Its entry was keyed
// by the sluice key's name alone, so a teammate with a bogus provider key got the answer the
// server made for another's (W1).
t.test('a credential forwarded beside a sluice key is part of the key too', async (t) => {
  const a1 = await chat('priv-1', { 'x-api-key': ALICE, authorization: 'Bearer provider-key-1' }, 'beside');
  t.equal(a1.headers['x-sluice-cache'], 'miss');
  t.equal(parsed(a1).who.authorization, 'Bearer provider-key-1', 'the provider key went upstream');
  t.equal(parsed(a1).who.x_api_key, null, 'the sluice key did not');
  const again = await chat('priv-1', { 'x-api-key': ALICE, authorization: 'Bearer provider-key-1' }, 'beside');
  t.equal(again.headers['x-sluice-cache'], 'hit', 'the same pair is the same caller');
  const other = await chat('priv-1', { 'x-api-key': ALICE, authorization: 'Bearer provider-key-2' }, 'beside');
  t.equal(other.headers['x-sluice-cache'], 'miss', 'another provider key with the same sluice key is another caller');
  t.equal(parsed(other).who.authorization, 'Bearer provider-key-2', 'and gets an answer made with its own key');
  const none = await chat('priv-1', { 'x-api-key': ALICE }, 'beside');
  t.equal(none.headers['x-sluice-cache'], 'miss', 'nor does the sluice key alone get it');
  // The other way round: the sluice key as the bearer token, the provider's in x-api-key.
  const x1 = await chat('priv-1', { authorization: `Bearer ${ALICE}`, 'x-api-key': 'provider-x-1' }, 'beside-x');
  t.equal(parsed(x1).who.x_api_key, 'provider-x-1');
  const x2 = await chat('priv-1', { authorization: `Bearer ${ALICE}`, 'x-api-key': 'provider-x-2' }, 'beside-x');
  t.equal(x2.headers['x-sluice-cache'], 'miss', 'x-api-key beside a bearer sluice key is part of the key');
  t.equal(parsed(x2).who.x_api_key, 'provider-x-2');
});

t.test('vary headers are part of the key', async (t) => {
  t.equal((await chat('vary-1', { 'x-tenant': 't1' }, 'vary')).headers['x-sluice-cache'], 'miss');
  t.equal((await chat('vary-1', { 'x-tenant': 't1' }, 'vary')).headers['x-sluice-cache'], 'hit');
  const t2 = await chat('vary-1', { 'x-tenant': 't2' }, 'vary');
  t.equal(t2.headers['x-sluice-cache'], 'miss', 'another tenant');
  t.equal(parsed(t2).who.tenant, 't2');
  t.equal((await chat('vary-1', {}, 'vary')).headers['x-sluice-cache'], 'miss', 'no tenant at all');
});

t.test('shared_across_callers: true shares entries between credentials', async (t) => {
  const a = await chat('pub-1', { authorization: 'Bearer user-A' }, 'shared');
  t.equal(a.headers['x-sluice-cache'], 'miss');
  const b = await chat('pub-1', { authorization: 'Bearer user-B' }, 'shared');
  t.equal(b.headers['x-sluice-cache'], 'hit', 'opted in: B is served A\'s entry');
  t.equal(parsed(b).call, parsed(a).call);
});

t.test('coalescing: identical requests in flight share one upstream call only within one caller', async (t) => {
  const slow = { 'x-delay-ms': '300' };
  const before = calls;
  const [a1, a2, b] = await Promise.all([
    chat('priv-1', { ...slow, authorization: 'Bearer user-A' }, 'flight'),
    chat('priv-1', { ...slow, authorization: 'Bearer user-A' }, 'flight'),
    chat('priv-1', { ...slow, authorization: 'Bearer user-B' }, 'flight'),
  ]);
  t.equal(calls - before, 2, 'A\'s two requests made one call, B its own');
  t.equal(parsed(a1).call, parsed(a2).call, 'A\'s requests share one answer');
  t.equal(parsed(a1).who.authorization, 'Bearer user-A');
  t.equal(parsed(b).who.authorization, 'Bearer user-B', 'B never joins A\'s request');
});

t.test('Cache-Control: no-cache goes upstream and refreshes the entry; no-store bypasses', async (t) => {
  const h = { authorization: 'Bearer user-C' };
  const first = await chat('priv-1', h, 'nocache');
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal((await chat('priv-1', h, 'nocache')).headers['x-sluice-cache'], 'hit');
  const before = calls;
  const fresh = await chat('priv-1', { ...h, 'cache-control': 'no-cache' }, 'nocache');
  t.equal(fresh.status, 200);
  t.equal(fresh.headers['x-sluice-cache'], 'miss', 'no-cache is not answered from the cache');
  t.equal(calls - before, 1, 'it reached the upstream');
  t.not(parsed(fresh).call, parsed(first).call, 'with a new answer');
  const after = await chat('priv-1', h, 'nocache');
  t.equal(after.headers['x-sluice-cache'], 'hit', 'its answer was stored');
  t.equal(parsed(after).call, parsed(fresh).call, 'the refreshed answer serves the next request');
  const noStore = await chat('priv-1', { ...h, 'cache-control': 'no-store' }, 'nocache');
  t.equal(noStore.headers['x-sluice-cache'], 'bypass', 'no-store is a full bypass');
  t.equal((await chat('priv-1', h, 'nocache')).headers['x-sluice-cache'], 'hit', 'and stores nothing over the entry');
  t.equal(parsed(await chat('priv-1', h, 'nocache')).call, parsed(fresh).call);
});
