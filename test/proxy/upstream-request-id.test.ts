// A model server's own x-request-id (OpenAI's `req_...`, which its support asks for) is
// not lost behind the gateway: the client's x-request-id is sluice's, so the server's is
// passed on as x-upstream-request-id and logged as the access line's upstream_request_id.
// (Both were dropped.) A cache hit carries its first answer's, but logs none: no server
// was asked. A server's Strict-Transport-Security is dropped: listen.hsts is the host's policy.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 23900-23904 belong to this file (none is used: one remote deployment).

let served = 0;
const provider: Server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const id = `req_${++served}`;
    if (req.url!.endsWith('/none')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    if (req.url!.includes('stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': id });
      res.end('data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n');
      return;
    }
    // A provider's own HSTS (api.openai.com sends this one): never the gateway's host's policy.
    res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': id, 'strict-transport-security': 'max-age=31536000; includeSubDomains; preload' })
      .end('{"choices":[{"message":{"content":"hi"}}]}');
  });
});
let gw: Gateway;

t.before(async () => {
  await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
  gw = await startGateway({
    ports: { from: 23900, to: 23904 },
    log: { level: 'info', access: true },
    deployments: [{ model: 'gpt', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(provider.address() as AddressInfo).port}`], health_check: { enabled: false } }],
  });
});
t.teardown(async () => {
  await gw?.stop();
  provider.close();
});

function chat(content: string, path = '/v1/chat/completions'): Promise<Reply> {
  return httpRequest(`${gw.url}${path}`, {
    method: 'POST',
    body: JSON.stringify({ model: 'gpt-1', temperature: 0, messages: [{ role: 'user', content }] }),
    headers: { 'content-type': 'application/json' },
  });
}

function accessLine(requestId: string): Promise<Record<string, unknown>> {
  return eventually(() => jsonLogs(gw).find((l) => l.msg === 'request' && l.request_id === requestId), 5_000, `the access line of ${requestId}`);
}

t.test('the server\'s request id reaches the client and the access log; the client\'s id stays sluice\'s', async (t) => {
  const first = await chat('one');
  t.equal(first.status, 200, first.body);
  const upstreamId = first.headers['x-upstream-request-id'];
  t.match(upstreamId, /^req_\d+$/, 'the server\'s id, as x-upstream-request-id');
  t.match(first.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'x-request-id is the gateway\'s');
  t.equal(first.rawHeaders.filter((h) => h.toLowerCase() === 'x-request-id').length, 1, 'one x-request-id');
  t.equal((await accessLine(first.headers['x-request-id'] as string)).upstream_request_id, upstreamId, 'logged with the gateway\'s');
  t.equal(first.headers['strict-transport-security'], undefined, 'a server\'s Strict-Transport-Security is not passed on: the gateway\'s host has its own (listen.hsts)');

  const second = await chat('two');
  t.not(second.headers['x-upstream-request-id'], upstreamId, 'each answer its own (a head is not reused across ids)');
  t.equal((await accessLine(second.headers['x-request-id'] as string)).upstream_request_id, second.headers['x-upstream-request-id']);

  const hit = await chat('one');
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  t.equal(hit.headers['x-upstream-request-id'], upstreamId, 'a hit carries the id of the answer it replays');
  t.equal((await accessLine(hit.headers['x-request-id'] as string)).upstream_request_id, null, 'but logs none: no server was asked');
});

t.test('a stream\'s head carries it too', async (t) => {
  const r = await httpRequest(`${gw.url}/gpt-1/v1/chat/completions?stream`, {
    method: 'POST', body: JSON.stringify({ model: 'gpt-1', stream: true, messages: [] }), headers: { 'content-type': 'application/json' },
  });
  t.equal(r.status, 200);
  t.match(r.headers['x-upstream-request-id'], /^req_\d+$/);
  t.equal((await accessLine(r.headers['x-request-id'] as string)).upstream_request_id, r.headers['x-upstream-request-id']);
});

t.test('a server that sends none: no header, null in the log', async (t) => {
  const r = await httpRequest(`${gw.url}/gpt-1/none`, { headers: { 'x-request-id': 'upstream-id-none' } });
  t.equal(r.status, 200);
  t.equal(r.headers['x-upstream-request-id'], undefined);
  t.equal((await accessLine('upstream-id-none')).upstream_request_id, null);
});
