// The access log's response_bytes is the body bytes the client got, for streams that end
// with the gateway's own error event or line too: that event counts, and a line the
// upstream left half-sent (held for its end, never sent) does not. So do the `: waking`
// comments of a held stream.

import { createServer, type Server } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 21900-21909 belong to this file: the upstream on the first, replicas on the rest.
const UPSTREAM_PORT = 21900;
let gw: Gateway;
let upstream: Server;

const ANSWERS: Record<string, { type: string; first: string; half: string }> = {
  'sse-half': { type: 'text/event-stream', first: 'data: {"a":1}\n\n', half: 'data: {"half' },
  'ndjson-half': { type: 'application/x-ndjson', first: '{"a":1,"done":false}\n', half: '{"half' },
};

const chunk = (s: string): string => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;

t.before(async () => {
  upstream = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.once('data', (d) => {
      const answer = ANSWERS[/^POST \/([a-z-]+)/.exec(d.toString('latin1'))?.[1] ?? ''];
      if (answer === undefined) return void sock.destroy();
      sock.write(`HTTP/1.1 200 OK\r\nContent-Type: ${answer.type}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(answer.first)}`);
      setTimeout(() => sock.write(chunk(answer.half)), 50);
      setTimeout(() => sock.destroy(), 150);
    });
  });
  await new Promise<void>((resolve, reject) => {
    upstream.once('error', reject);
    upstream.listen(UPSTREAM_PORT, '127.0.0.1', () => resolve());
  });
  gw = await startGateway({
    ports: { from: 21901, to: 21909 },
    policies: { cache: { enabled: false } },
    deployments: [
      {
        model: 'cut', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${UPSTREAM_PORT}`],
        policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
      },
      { model: 'slow', version: '1', runtime: 'sim', args: ['--ttft-ms', '20', '--token-ms', '100', '--tokens', '30'], policies: { total_timeout_ms: 700 } },
      {
        model: 'held', version: '1', runtime: 'sim', args: ['--start-delay-ms', '1000', '--token-ms', '10', '--tokens', '5'],
        scale: { min_replicas: 0, idle_timeout_s: 3600 }, policies: { hold: { heartbeat_ms: 250 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

async function loggedBytes(requestId: string): Promise<Record<string, unknown>> {
  return eventually(() => jsonLogs(gw).find((l) => l.msg === 'request' && l.request_id === requestId), 5_000, `the access line of ${requestId}`);
}

const streamBody = (model: string): string => JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] });

for (const path of Object.keys(ANSWERS)) {
  t.test(`${path}: the error the stream ends with counts, the half line never sent does not`, async (t) => {
    const r = await httpRequest(`${gw.url}/cut-1/${path}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    t.equal(r.status, 200);
    t.match(r.body, /SLUICE_ERR_UPSTREAM_RESET/, 'the stream ends with the gateway error');
    t.notMatch(r.body, /half/, 'the half line was not sent');
    const line = await loggedBytes(r.headers['x-request-id'] as string);
    t.equal(line.error, 'SLUICE_ERR_UPSTREAM_RESET');
    t.equal(line.response_bytes, Buffer.byteLength(r.body), 'response_bytes is what the client got');
  });
}

t.test('a stream the total timeout ends: its error event counts', async (t) => {
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: streamBody('slow-1'), headers: { 'content-type': 'application/json' } });
  t.match(r.body, /event: error\ndata: .*SLUICE_ERR_TOTAL_TIMEOUT/);
  const line = await loggedBytes(r.headers['x-request-id'] as string);
  t.equal(line.error, 'SLUICE_ERR_TOTAL_TIMEOUT');
  t.equal(line.response_bytes, Buffer.byteLength(r.body), 'response_bytes is what the client got');
});

t.test('a held stream: its `: waking` comments count', async (t) => {
  const h = await httpRequest(`${gw.adminUrl}/v1/deployments/held-1/hibernate`, { method: 'POST' });
  t.equal(h.status, 200, 'hibernated');
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: streamBody('held-1'), headers: { 'content-type': 'application/json' } });
  t.match(r.body, /^: waking\n\n/, 'heartbeats came first');
  t.match(r.body, /data: \[DONE\]\n\n$/, 'then the whole stream');
  const line = await loggedBytes(r.headers['x-request-id'] as string);
  t.equal(line.response_bytes, Buffer.byteLength(r.body), 'response_bytes is what the client got');
});
