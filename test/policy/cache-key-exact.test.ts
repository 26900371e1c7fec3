// The cache key holds a JSON body in a canonical form (sorted keys, no whitespace) so that
// equal documents share an entry; two bodies a model server reads differently never may.
// JSON.parse makes every number a double and every invalid UTF-8 byte U+FFFD, which would
// merge `"seed": 9007199254740993` with `...992`, or a Latin-1 "é" with "è": such bodies
// are keyed by their bytes instead.

import { Buffer } from 'node:buffer';
import { createServer, type Server } from 'node:http';
import t, { type Test } from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 24200-24209 belong to this file: the echoing upstream on the first.
const ECHO_PORT = 24200;
let gw: Gateway;
let echo: Server;
let calls = 0;

t.before(async () => {
  // Answers each request with its body, byte for byte.
  echo = createServer((req, res) => {
    calls++;
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => res.end(Buffer.concat(parts)));
  });
  await new Promise<void>((resolve, reject) => {
    echo.once('error', reject);
    echo.listen(ECHO_PORT, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 24201, to: 24209 },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'ck', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${ECHO_PORT}`], policies: { cache: { enabled: true } } },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => echo?.close(() => resolve()));
});

function post(body: string | Buffer): Promise<Reply> {
  return httpRequest(`${gw.url}/ck-1/invocations`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
}

/** Sends `first` then `second`: the second must reach the upstream and get its own answer. */
async function distinct(t: Test, first: string | Buffer, second: string | Buffer): Promise<void> {
  const a = await post(first);
  t.equal(a.headers['x-sluice-cache'], 'miss');
  const before = calls;
  const b = await post(second);
  t.equal(b.headers['x-sluice-cache'], 'miss', 'the second body is not answered from the first one\'s entry');
  t.equal(calls - before, 1, 'the second request reached the upstream');
  const again = await post(second);
  t.equal(again.headers['x-sluice-cache'], 'hit', 'it has an entry of its own');
}

t.test('integers above 2^53 that JSON.parse rounds to one double are different requests', async (t) => {
  await distinct(t, '{"seed":9007199254740993,"prompt":"hi"}', '{"seed":9007199254740992,"prompt":"hi"}');
  const r = await post('{"seed":9007199254740993,"prompt":"hi"}');
  t.equal(r.headers['x-sluice-cache'], 'hit');
  t.equal(r.body, '{"seed":9007199254740993,"prompt":"hi"}', 'each seed is answered with its own answer');
});

t.test('numbers written differently (1.0 and 1, 0.1 and 0.10000000000000001) are different requests', async (t) => {
  await distinct(t, '{"temperature":1.0,"n":1}', '{"temperature":1,"n":1}');
  await distinct(t, '{"top_p":0.1}', '{"top_p":0.10000000000000001}');
});

t.test('bodies that differ in bytes which are not UTF-8 are different requests', async (t) => {
  // A Latin-1 client's "café" and "cafè": both would decode to "caf\uFFFD".
  await distinct(t, Buffer.from('{"prompt":"caf\xe9"}', 'latin1'), Buffer.from('{"prompt":"caf\xe8"}', 'latin1'));
});

t.test('equal documents still share an entry: key order and whitespace do not matter', async (t) => {
  const a = await post('{"prompt":"same","max_tokens":16,"nested":{"x":1,"y":[1,2]}}');
  t.equal(a.headers['x-sluice-cache'], 'miss');
  const b = await post('{ "nested": {"y": [1, 2], "x": 1}, "max_tokens": 16,\n "prompt": "same" }');
  t.equal(b.headers['x-sluice-cache'], 'hit');
  t.equal(b.body, a.body, 'the first answer');
  // A string escaped or not is one string to every JSON reader.
  const c = await post('{"p":"\\u00e9t\\u00e9"}');
  t.equal(c.headers['x-sluice-cache'], 'miss');
  const d = await post('{"p":"été"}');
  t.equal(d.headers['x-sluice-cache'], 'hit');
});
