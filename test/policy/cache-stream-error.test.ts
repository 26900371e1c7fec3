// A server that fails once its 200 head and part of a stream are sent says so in the stream:
// Ollama with a last NDJSON line `{"error":"..."}` (protocols.md, B2), OpenAI-compatible
// servers with an SSE `data: {"error":...}` event before `[DONE]`, the Responses API with
// `event: error`. Such an answer was stored in the response cache and replayed to every
// identical deterministic request for ttl_ms: one failed generation failed that prompt for
// five minutes. It is relayed to the clients that shared it, and not stored; the next
// request goes upstream, and its whole answer is stored as before.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { firstEvent, STREAM_FAILURES } from '../helpers/stream-failures.js';


// No fixed port: the gateway's are ephemeral, the model server is this process's (port 0), and its deployment is remote.
let gw: Gateway;
let server: Server;
/** Upstream calls so far; the first of each kind fails mid-stream, the others answer whole. */
const calls = new Map<string, number>();

t.before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const kind = Object.entries(STREAM_FAILURES).find(([, f]) => f.path === req.url)!;
      const [name, f] = kind;
      const n = (calls.get(name) ?? 0) + 1;
      calls.set(name, n);
      res.writeHead(200, { 'content-type': f.type });
      res.write(firstEvent(f.type));
      res.end(n === 1 ? f.error : f.ok);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gw = await startGateway({
    log: { level: 'info', access: false },
    deployments: [{
      model: 'flaky', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`],
      health_check: { enabled: false },
    }],
  });
});
t.teardown(async () => {
  await gw?.stop();
  server?.close();
});

function ask(path: string): Promise<Reply> {
  // Deterministic (temperature 0), or asked for (the Responses API is cached on request only).
  return httpRequest(`${gw.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-sluice-cache': 'on' },
    body: JSON.stringify({ model: 'flaky-1', stream: true, temperature: 0, options: { temperature: 0 }, messages: [{ role: 'user', content: 'hi' }], input: 'hi' }),
  });
}

for (const [name, f] of Object.entries(STREAM_FAILURES)) {
  t.test(`${name}: a stream that ends in an error is not stored`, async (t) => {
    const failed = await ask(f.path);
    t.equal(failed.status, 200);
    t.ok(failed.body.endsWith(f.error), 'the client got the server\'s error');
    t.equal(failed.headers['x-sluice-cache'], 'miss');
    const next = await ask(f.path);
    t.equal(next.headers['x-sluice-cache'], 'miss', 'the next request went upstream');
    t.ok(next.body.endsWith(f.ok), 'and got a whole answer');
    t.equal(calls.get(name), 2);
    const hit = await ask(f.path);
    t.equal(hit.headers['x-sluice-cache'], 'hit', 'the whole answer is stored');
    t.equal(hit.body, next.body);
    t.equal(calls.get(name), 2, 'and served without the upstream');
  });
}
