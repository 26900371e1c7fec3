// A cacheable request whose JSON body nests deeper than its canonical form is built for
// (thousands of levels: 400 KB of brackets, sent by anyone) is keyed by its bytes, as the
// bodies whose canonical form would lose something are: it is answered, cached, and the
// worker lives on (building that form overflowed the stack, which ended the worker; two such
// requests ended a two-worker gateway). Through the real gateway.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27760-27769 belong to this file: 27760 the model server.
const SERVER_PORT = 27760;
const DEPTH = 200_000;

let server: Server;
let calls = 0;
let gw: Gateway;

t.before(async () => {
  server = createServer((req, res) => {
    calls++;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"choices":[{"message":{"content":"ok"}}]}');
    });
  });
  await new Promise<void>((resolve) => server.listen(SERVER_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    deployments: [{ model: 'm', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${SERVER_PORT}`], health_check: { enabled: false } }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

t.test('a deeply nested body is keyed by its bytes', async (t) => {
  const body = `{"model":"m","temperature":0,"messages":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`;
  const send = (): ReturnType<typeof httpRequest> => httpRequest(`${gw.url}/m-1/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const first = await send();
  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  const second = await send();
  t.equal(second.status, 200);
  t.equal(second.headers['x-sluice-cache'], 'hit', 'the same bytes, the same key');
  t.equal(calls, 1);
  const after = await httpRequest(`${gw.url}/m-1/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m","temperature":0,"messages":[]}' });
  t.equal(after.status, 200, 'the worker serves on');
  t.notOk(gw.lines.some((l) => l.includes('worker exited')), 'no worker ended');
});
