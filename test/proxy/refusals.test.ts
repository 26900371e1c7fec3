// What a refused client sees: an open deployment never refuses a key (OpenAI SDKs always
// send one), a 429 names the limit that was hit, a refusal keeps the connection when the
// request body is small enough to drain, and every request, whoever answered it, has an
// access log line of one shape.

import t from 'tap';
import { httpRequest, RawConnection, rawRequest, type Reply } from '../helpers/http.js';
import { errorOf } from '../helpers/policy.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18910-18919 belong to this file.
const OTHER = 'sk-other-0123456789abcdef-OTHERKEY';
const TIGHT = 'sk-tight-0123456789abcdef-TIGHTKEY';
const PER = 'sk-per-0123456789abcdef-PERDEPKEY';
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18910, to: 18919 },
    log: { level: 'info', access: true },
    api_keys: [
      { name: 'other', key: OTHER, deployments: ['sec-1'] },
      { name: 'tight', key: TIGHT, limits: { requests_per_minute: 1 } },
      { name: 'per', key: PER, deployment_limits: { requests_per_minute: 1 } },
    ],
    deployments: [
      { model: 'open', version: '1', runtime: 'sim' },
      { model: 'sec', version: '1', runtime: 'sim', policies: { auth: { required: true } } },
      { model: 'closed', version: '1', runtime: 'sim', policies: { auth: { required: true } } },
      { model: 'lim', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 2 } } },
      { model: 'tok', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '10'], policies: { rate_limit: { tokens_per_minute: 5 } } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

const withKey = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const tags = (deployment: string, headers: Record<string, string> = {}): Promise<Reply> => httpRequest(`${gw.url}/${deployment}/api/tags`, { headers });

t.test('a valid key scoped to other deployments is not refused where no key is needed', async (t) => {
  const open = await tags('open-1', withKey(OTHER));
  t.equal(open.status, 200, 'the open deployment answers a key scoped elsewhere');
  t.equal((await tags('open-1')).status, 200, 'and no key at all');
  const closed = await tags('closed-1', withKey(OTHER));
  t.equal(closed.status, 403, 'a deployment that requires keys still checks the scope');
  t.equal(errorOf(closed)?.code, 'SLUICE_ERR_FORBIDDEN');
  t.equal((await tags('sec-1', withKey(OTHER))).status, 200, 'in scope');
});

t.test('a 429 names the limit that was hit', async (t) => {
  const untilLimited = async (send: () => Promise<Reply>): Promise<Reply> => {
    for (let i = 0; i < 20; i++) {
      const r = await send();
      if (r.status === 429) return r;
    }
    throw new Error('never limited');
  };
  const dep = await untilLimited(() => tags('lim-1'));
  t.match(errorOf(dep)?.message, /^rate limit exceeded: requests_per_minute \(2\) of deployment lim-1; retry in \d+ s$/, 'the deployment\'s limit');
  const key = await untilLimited(() => tags('open-1', withKey(TIGHT)));
  t.match(errorOf(key)?.message, /requests_per_minute \(1\) of API key 'tight';/, 'the key\'s own limit');
  const perDep = await untilLimited(() => tags('open-1', withKey(PER)));
  t.match(errorOf(perDep)?.message, /requests_per_minute \(1\) of API key 'per' on deployment open-1;/, 'the key\'s limit on this deployment');
  t.equal((await tags('sec-1', withKey(PER))).status, 200, 'which is not its limit on another deployment');
  const body = JSON.stringify({ model: 'demo', prompt: 'one two three', stream: false });
  const tok = await untilLimited(() => httpRequest(`${gw.url}/tok-1/api/generate`, { method: 'POST', body }));
  t.match(errorOf(tok)?.message, /tokens_per_minute \(5\) of deployment tok-1;/, 'a token limit');
});

t.test('a refusal keeps the connection when the body is small, whether it was read or not', async (t) => {
  const conn = await RawConnection.open(gw.port);
  t.teardown(() => conn.close());
  const body = '{"model":"demo","prompt":"hello there, how are you?"}';
  const post = (path: string, extra = ''): string => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}Content-Length: ${body.length}\r\n\r\n`;
  // Rate limited (lim-1 is spent by the test above): answered by the exchange.
  const limited = await conn.request(post('/lim-1/api/generate') + body);
  t.equal(limited?.status, 429);
  t.not(limited?.headers.connection, 'close', 'no Connection: close on a 429');
  // Refused before the body was read (no key), with the body still on its way.
  const half = body.length >> 1;
  const unauthorized = await conn.request(post('/sec-1/api/generate') + body.slice(0, half));
  t.equal(unauthorized?.status, 401);
  t.not(unauthorized?.headers.connection, 'close', 'no Connection: close on a 401');
  const next = await conn.request(`${body.slice(half)}GET /open-1/api/tags HTTP/1.1\r\nHost: x\r\n\r\n`);
  t.equal(next?.status, 200, 'the rest of the refused body was dropped and the next request served on the same connection');
  t.equal(conn.closed, false);
  t.equal(conn.unread, '', 'nothing else arrived');

  // A large upload is not read: the connection closes after the answer.
  const big = await rawRequest(gw.port, `POST /sec-1/api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: ${1024 * 1024}\r\n\r\n`, { body: [Buffer.alloc(1024)] });
  t.equal(big.status, 401);
  t.equal(big.headers.connection, 'close', 'a 1 MiB upload is not drained');
  t.ok(big.closed, 'and the connection is closed');
});

t.test('every request has an access log line of one shape', async (t) => {
  const sent: Array<[string, Promise<Reply>]> = [
    ['ok', httpRequest(`${gw.url}/open-1/api/generate`, { method: 'POST', headers: { 'x-request-id': 'shape-ok' }, body: '{"model":"demo","prompt":"hi","stream":false}' })],
    ['401', httpRequest(`${gw.url}/sec-1/api/tags`, { headers: { 'x-request-id': 'shape-401' } })],
    ['403', httpRequest(`${gw.url}/closed-1/api/tags`, { headers: { 'x-request-id': 'shape-403', ...withKey(OTHER) } })],
    ['404', httpRequest(`${gw.url}/nowhere/x?secret=1`, { headers: { 'x-request-id': 'shape-404' } })],
    ['429', httpRequest(`${gw.url}/lim-1/api/tags`, { headers: { 'x-request-id': 'shape-429' } })],
  ];
  const keys = ['request_id', 'method', 'path', 'client', 'route', 'upstream', 'status', 'duration_ms', 'ttfb_ms', 'upstream_request_id', 'request_bytes', 'response_bytes', 'cache', 'key_label', 'error', 'cost_usd'];
  for (const [what, pending] of sent) {
    const r = await pending;
    const id = `shape-${what}`;
    const line = await eventually(() => jsonLogs(gw).find((l) => l.msg === 'request' && l.request_id === id), 5_000, `the access line of ${id}`);
    const fields = Object.keys(line).filter((k) => !['level', 'time', 'pid', 'hostname', 'name', 'msg', 'worker'].includes(k));
    t.same(fields, keys, `${what}: the same fields in the same order`);
    t.equal(line.status, r.status, `${what}: status`);
    t.equal(line.client, '127.0.0.1', `${what}: the client address`);
    t.equal(line.response_bytes, Buffer.byteLength(r.body), `${what}: response bytes`);
    t.equal(line.cache, r.headers['x-sluice-cache'], `${what}: the cache outcome the client saw`);
    t.equal(line.error, errorOf(r)?.code ?? null, `${what}: the error code, or null`);
    t.ok(typeof line.method === 'string' && typeof line.path === 'string' && typeof line.duration_ms === 'number', `${what}: method, path, duration`);
  }
  const ok = jsonLogs(gw).find((l) => l.request_id === 'shape-ok')!;
  t.equal(ok.path, '/open-1/api/generate');
  t.equal(ok.method, 'POST');
  t.equal(ok.route, 'open-1');
  t.ok(ok.request_bytes as number > 0 && typeof ok.upstream === 'string' && typeof ok.ttfb_ms === 'number');
  t.equal(jsonLogs(gw).find((l) => l.request_id === 'shape-404')!.path, '/nowhere/x', 'the query string is not logged');
});
