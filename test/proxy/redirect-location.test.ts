// A model server's redirect names its own address (its Host, the one the gateway sent) or
// a path of its own; through the gateway the client must be sent where the gateway serves
// that resource, under the route's prefix: FastAPI's trailing-slash redirect on /m-1/docs
// sent clients to the model server's port, or to /docs/, which routes nowhere. And an
// upstream's own RateLimit-* headers went out beside the gateway's (two RateLimit-Limit
// values, the server's first).

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19460-19469 belong to this file (its deployments are remote: none is started).

/** Every value of header `name` in a response's raw header list. */
function values(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

const SERVER_RATELIMIT = { 'RateLimit-Limit': '7', 'RateLimit-Remaining': '3', 'RateLimit-Reset': '42', 'RateLimit-Policy': '7;w=60' };

/** Answers a path with a redirect to what `to(host)` says, or 200 with the server's RateLimit-* headers. */
function server(redirects: Record<string, [number, (host: string) => string]>): Server {
  return createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const redirect = redirects[req.url ?? ''];
      if (redirect !== undefined) res.writeHead(redirect[0], { location: redirect[1](req.headers.host ?? ''), 'content-type': 'text/plain' }).end('moved');
      else res.writeHead(200, { 'content-type': 'application/json', ...SERVER_RATELIMIT }).end('{"ok":true}');
    });
  });
}

const local = server({
  '/docs': [307, (host) => `http://${host}/docs/`],
  '/rel': [302, () => '/next?a=1'],
  '/else': [302, () => 'https://elsewhere.example/x'],
  '/netpath': [302, () => '//elsewhere.example/x'],
  '/relative': [302, () => 'next'],
  '/created': [201, (host) => `HTTP://${host.toUpperCase()}/items/7`],
  '/v1/chat/completions': [307, (host) => `http://${host}/v1/other`],
});
const based = server({
  '/base/go': [302, (host) => `http://${host}/base/there`],
  '/base/up': [302, () => '/base'],
  '/base/q': [302, (host) => `http://${host}/base?x=1`],
  '/base/out': [302, () => '/other'],
  '/base/sibling': [302, () => '/basement'],
});
// A remote whose URL carries its key in the query (README: `?key=...`, put first in every
// request's query, shown as `?***`), behind a server that redirects as Starlette does for a
// missing trailing slash: the same URL with `/`, the query as it was asked for. The key went
// to the client in the Location (W3).
const KEY_QUERY = 'key=url-key-SECRET-0001';
const keyed = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q);
    if (path === '/base/items') res.writeHead(307, { location: `http://${req.headers.host ?? ''}${path}/${query}` }).end();
    else if (path === '/base/abs') res.writeHead(307, { location: `${path}/${query}#part` }).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url }));
  });
});
let gw: Gateway;

t.before(async () => {
  await Promise.all([local, based, keyed].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const port = (s: Server): number => (s.address() as AddressInfo).port;
  gw = await startGateway({
    ports: { from: 19460, to: 19469 },
    deployments: [
      { model: 'a', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port(local)}`], health_check: { enabled: false } },
      { model: 'b', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port(based)}/base`], health_check: { enabled: false } },
      { model: 'k', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port(keyed)}/base?${KEY_QUERY}`], health_check: { enabled: false } },
      // The same server as a's (one connection pool, one cached head per connection), with a rate limit of the gateway's.
      { model: 'rl', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${port(local)}`], health_check: { enabled: false },
        policies: { rate_limit: { requests_per_minute: 1_000_000 } } },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  local.close();
  based.close();
  keyed.close();
});

async function location(path: string, init?: { method: string; body: string; headers: Record<string, string> }): Promise<[number, string | undefined]> {
  const r: Reply = await httpRequest(`${gw.url}${path}`, init);
  return [r.status, values(r.rawHeaders, 'location').join(' | ') || undefined];
}

t.test("a redirect to the model server's own address or path is sent under the route's prefix", async (t) => {
  t.same(await location('/a-1/docs'), [307, '/a-1/docs/'], 'its Host-built URL, on the version path');
  t.same(await location('/a/docs'), [307, '/a/docs/'], 'and on the alias');
  t.same(await location('/a-1/rel'), [302, '/a-1/next?a=1'], 'an absolute path, with its query');
  t.same(await location('/a-1/created'), [201, '/a-1/items/7'], "a 201's Location too, the scheme and host in any case");
  const root = await location('/v1/chat/completions', { method: 'POST', body: '{"model":"a","messages":[]}', headers: { 'content-type': 'application/json' } });
  t.same(root, [307, '/v1/other'], 'at the root (routed by the body\'s model) the origin alone goes');
});

t.test("a remote's base path is taken off, and only a Location under it is rewritten", async (t) => {
  t.same(await location('/b-1/go'), [302, '/b-1/there']);
  t.same(await location('/b-1/up'), [302, '/b-1'], 'the base path itself: the route\'s root');
  t.same(await location('/b-1/q'), [302, '/b-1?x=1']);
  t.same(await location('/b-1/out'), [302, '/other'], 'a path outside the base path goes as sent');
  t.same(await location('/b-1/sibling'), [302, '/basement'], 'as does one that only begins with its characters');
});

t.test('a Location elsewhere goes as sent', async (t) => {
  t.same(await location('/a-1/else'), [302, 'https://elsewhere.example/x'], 'another host');
  t.same(await location('/a-1/netpath'), [302, '//elsewhere.example/x'], 'a network-path reference');
  t.same(await location('/a-1/relative'), [302, 'next'], 'a relative reference (the client resolves it under the prefix already)');
});

t.test("the server's RateLimit-* headers give way to the gateway's, and pass where the gateway sends none", async (t) => {
  // Alternated on one pooled connection: its cached client head must follow the route.
  for (let i = 0; i < 4; i++) {
    const own = await httpRequest(`${gw.url}/rl-1/plain`);
    t.equal(own.status, 200);
    t.same(values(own.rawHeaders, 'ratelimit-limit'), ['1000000'], `rl (${i}): the gateway's limit, once`);
    t.equal(values(own.rawHeaders, 'ratelimit-remaining').length, 1, `rl (${i}): one remaining`);
    t.equal(values(own.rawHeaders, 'ratelimit-reset').length, 1, `rl (${i}): one reset`);
    t.same(values(own.rawHeaders, 'ratelimit-policy'), [], `rl (${i}): not the server's policy`);
    const theirs = await httpRequest(`${gw.url}/a-1/plain`);
    t.same(values(theirs.rawHeaders, 'ratelimit-limit'), ['7'], `a (${i}): no limit of the gateway's, the server's passes`);
    t.same(values(theirs.rawHeaders, 'ratelimit-policy'), ['7;w=60'], `a (${i}): with its policy`);
  }
});

t.test("a remote URL's own query never reaches the client in a Location", async (t) => {
  t.same(await location('/k-1/items?x=1'), [307, '/k-1/items/?x=1'], 'the client\'s parameters stay, the key goes');
  t.same(await location('/k-1/items'), [307, '/k-1/items/'], 'with none of the client\'s, no query is left');
  t.same(await location('/k/items?x=1&y=2'), [307, '/k/items/?x=1&y=2'], 'on the alias too');
  t.same(await location('/k-1/abs?x=1'), [307, '/k-1/abs/?x=1#part'], 'a path of the server\'s own');
  t.same(await location('/k-1/abs'), [307, '/k-1/abs/#part'], 'before a fragment');
  // Followed, the gateway puts the key first again: the server sees it once.
  const followed = await httpRequest(`${gw.url}/k-1/items/?x=1`);
  t.same(JSON.parse(followed.body), { url: `/base/items/?${KEY_QUERY}&x=1` });
});
