// A replica that fails right after its response head (it closes, stalls to a timeout, or
// sends a malformed first chunk) must not reach the client as a whole answer. The head
// goes out before any body byte, so the client gets it with its framing (the length, or
// chunked) and then the cut: a truncated answer every HTTP/1.1 client can tell. A head
// without its framing line, ended by a close, would read as a complete empty body.

import { createServer, type Server } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 24220-24229 belong to this file: the upstream on the first.
const UPSTREAM_PORT = 24220;
let gw: Gateway;
let upstream: Server;

const HEADS: Record<string, { head: string; then: 'close' | 'stall' | string }> = {
  'length-close': { head: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n', then: 'close' },
  'chunked-close': { head: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', then: 'close' },
  'length-stall': { head: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n', then: 'stall' },
  'bad-chunk': { head: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', then: 'zz\r\nhello\r\n0\r\n\r\n' },
};

t.before(async () => {
  upstream = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.once('data', (d) => {
      const path = /^GET \/([a-z-]+)/.exec(d.toString('latin1'))?.[1] ?? '';
      const answer = HEADS[path];
      if (answer === undefined) return void sock.destroy();
      if (answer.then === 'close') sock.end(answer.head);
      else if (answer.then === 'stall') sock.write(answer.head);
      // The head and the broken chunk in one write: the gateway reads them together.
      else sock.write(answer.head + answer.then);
    });
  });
  await new Promise<void>((resolve, reject) => {
    upstream.once('error', reject);
    upstream.listen(UPSTREAM_PORT, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 24221, to: 24229 },
    upstream: { idle_timeout_ms: 300 },
    deployments: [
      {
        model: 'cut', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
        policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

for (const path of Object.keys(HEADS)) {
  t.test(`${path}: the client sees a truncated answer, not a whole one`, async (t) => {
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest(`${gw.url}/cut-1/${path}`).catch((err: Error) => err);
      if (r instanceof Error) {
        t.fail(`no answer at all, not even the head (try ${i + 1}): ${r.message}`);
        continue;
      }
      if (r.status === 200) {
        t.notOk(r.complete, `the 200 is cut, not complete (try ${i + 1})`);
        t.ok(r.headers['content-length'] === '50' || r.headers['transfer-encoding'] === 'chunked', 'the head has its framing');
      } else {
        t.equal(r.status, 502, 'or a 502 when nothing of the answer went out');
      }
    }
  });
}
