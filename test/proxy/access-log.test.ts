// The access log: one pino line per proxied request (log.access: true) with the request
// id the client got back, the route, the status, the upstream replica and the durations,
// total (duration_ms) and to the upstream's response head (ttfb_ms).

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { deployments, eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18480-18484 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;
let replicaUrl: string;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 18480, to: 18484 },
    log: { level: 'info', access: true },
    // The simulator answers its stream's head with the first token, after ttft.
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '150', '--token-ms', '40', '--tokens', '5'] }],
  });
  const d = (await deployments(gw)).find((x) => x.id === 'demo-1')!;
  replicaUrl = d.replicas[0]!.url;
});
t.teardown(async () => {
  await gw?.stop();
});

function accessLine(requestId: string): Promise<Record<string, unknown>> {
  return eventually(() => jsonLogs(gw).find((l) => l.msg === 'request' && l.request_id === requestId), 5_000, `the access-log line of ${requestId}`);
}

t.test('one line per request: id, route, status, upstream, duration_ms >= ttfb_ms >= 0', async (t) => {
  const r = await httpRequest(`${gw.url}/demo-1/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', prompt: 'hi' }), headers: { 'content-type': 'application/json' } });
  t.equal(r.status, 200);
  const id = r.headers['x-request-id'];
  t.type(id, 'string', 'the gateway returned a request id');
  const line = await accessLine(id as string);
  t.equal(line.request_id, id, 'request_id is the x-request-id the client got');
  t.equal(line.route, 'demo-1');
  t.equal(line.status, 200);
  t.equal(line.method, 'POST');
  t.equal(line.upstream, replicaUrl, 'upstream is the replica that answered');
  t.match(replicaUrl, /^http:\/\/127\.0\.0\.1:1848[0-4]$/, 'a replica of this file’s port range');
  t.type(line.duration_ms, 'number');
  t.type(line.ttfb_ms, 'number');
  const total = line.duration_ms as number;
  const ttfb = line.ttfb_ms as number;
  t.ok(ttfb >= 0, `ttfb_ms ${ttfb} >= 0`);
  t.ok(total >= ttfb, `duration_ms ${total} >= ttfb_ms ${ttfb}`);
  // The head comes with the first token (ttft 150 ms); the body takes 5 x 40 ms more.
  t.ok(ttfb >= 140, `ttfb_ms ${ttfb} includes the upstream's 150 ms to its head`);
  t.ok(total - ttfb >= 120, `duration_ms ${total} includes the streamed body after the head (ttfb_ms ${ttfb})`);
  t.equal(jsonLogs(gw).filter((l) => l.request_id === id).length, 1, 'exactly one line for the request');
});

t.test('a client-chosen request id is the one logged', async (t) => {
  const r = await httpRequest(`${gw.url}/demo/api/tags`, { headers: { 'x-request-id': 'access-log-42' } });
  t.equal(r.status, 200);
  t.equal(r.headers['x-request-id'], 'access-log-42');
  const line = await accessLine('access-log-42');
  t.match(line, { route: 'demo-1', status: 200, upstream: replicaUrl, method: 'GET' });
  t.ok((line.duration_ms as number) >= (line.ttfb_ms as number) && (line.ttfb_ms as number) >= 0, 'duration_ms >= ttfb_ms >= 0');
});
