// Every error the gateway produces itself: JSON `{"error":{"code","message","request_id"}}`
// with the matching x-request-id header, one x-sluice-cache: bypass and the right status,
// whether the request was malformed, unroutable, too large, or its upstream refused, reset,
// hung, stalled or died.
// Errors after a stream has started end the stream cleanly with an error event / line.

import { createServer, type Server, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest, metric, rawRequest, type RawReply, type Reply } from '../helpers/http.js';
import { errorOf } from '../helpers/policy.js';
import { eventually, jsonLogs, metricsText, replicaPorts, simStats, startGateway, waitReplicasReady, type Gateway } from '../helpers/procs.js';

const MAX_BODY = 1024 * 1024;

// Replica ports 18420-18439 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;
let resetServer: Server;
let rstServer: Server;
let staleServer: Server;
let staleConnections = 0;
const resetSockets = new Set<Socket>();
let closedPort: number;
let cutServer: Server;

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

t.before(async () => {
  // A port nobody listens on: bind, note, close.
  const probe = createServer();
  closedPort = await listen(probe);
  await new Promise<void>((r) => probe.close(() => r()));
  // Accepts, then drops the connection as soon as the request arrives.
  resetServer = createServer((s) => {
    resetSockets.add(s);
    s.once('data', () => s.destroy());
    s.on('close', () => resetSockets.delete(s));
  });
  const resetPort = await listen(resetServer);
  // The same, but with a TCP RST instead of a FIN.
  rstServer = createServer((s) => {
    resetSockets.add(s);
    s.once('data', () => s.resetAndDestroy());
    s.on('close', () => resetSockets.delete(s));
  });
  const rstPort = await listen(rstServer);
  // Answers the first request of each connection with a keep-alive response, then drops
  // the connection when a second request arrives on it: the race of a server closing an
  // idle keep-alive connection just as the gateway reuses it.
  staleServer = createServer((s) => {
    staleConnections++;
    resetSockets.add(s);
    let served = 0;
    s.on('data', () => {
      if (served++ === 0) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else s.destroy();
    });
    s.on('close', () => resetSockets.delete(s));
  });
  const stalePort = await listen(staleServer);
  // Streams whose lines arrive in pieces (as TCP may deliver them): `/cut-*` dies after
  // half a line, `/split-*` ends whole, its last NDJSON line without a line end.
  cutServer = createServer((s) => {
    resetSockets.add(s);
    s.on('close', () => resetSockets.delete(s));
    s.once('data', (d) => {
      const path = d.toString('latin1').split(' ')[1]!;
      const sse = path.endsWith('-sse');
      const chunk = (text: string): string => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
      s.write(`HTTP/1.1 200 OK\r\nContent-Type: ${sse ? 'text/event-stream' : 'application/x-ndjson'}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const pieces = sse ? ['data: {"n":1}\n\n', 'data: {"n":', '2}\n', '\n'] : ['{"n":1}\n', '{"n":', '2}\n{"n', '":3}'];
      s.write(chunk(pieces[0]!));
      setTimeout(() => s.write(chunk(pieces[1]!)), 20);
      if (path.startsWith('/cut')) setTimeout(() => s.destroy(), 60);
      else {
        setTimeout(() => s.write(chunk(pieces[2]!)), 60);
        setTimeout(() => s.end(chunk(pieces[3]!) + '0\r\n\r\n'), 100);
      }
    });
  });
  const cutPort = await listen(cutServer);
  gw = await startGateway({
    ports: { from: 18420, to: 18439 },
    limits: { max_body_bytes: MAX_BODY },
    // Errors must be logged even with the access log off.
    log: { level: 'info', access: false },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim' },
      // Health checks off: these upstreams fail on purpose and must stay routed.
      { model: 'refused', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${closedPort}`] },
      { model: 'reset', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${resetPort}`] },
      { model: 'rst', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${rstPort}`] },
      { model: 'stale', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${stalePort}`] },
      { model: 'cut', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${cutPort}`], policies: { retry: { attempts: 0 } } },
      // Starting for ever: its requests are held (policies.hold), here for 300 ms at most.
      { model: 'cold', version: '1', runtime: 'command', command: ['sleep', '1000'], port_env: 'PORT', policies: { hold: { max_wait_ms: 300 } } },
      { model: 'hang', version: '1', runtime: 'sim', args: ['--hang'], upstream: { headers_timeout_ms: 300 } },
      { model: 'slow', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '5000', '--tokens', '5'], upstream: { idle_timeout_ms: 300 } },
      { model: 'busy', version: '1', runtime: 'sim', args: ['--status', '503'] },
      { model: 'crashy', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '30', '--tokens', '20', '--crash-after', '3'] },
    ],
  }, {}, false);
  await waitReplicasReady(gw, ['demo-1', 'hang-1', 'slow-1', 'crashy-1', 'busy-1']);
});

t.teardown(async () => {
  await gw?.stop();
  for (const s of resetSockets) s.destroy();
  resetServer?.close();
  rstServer?.close();
  staleServer?.close();
  cutServer?.close();
});

/** The assertions a helper needs, satisfied by the root test and by subtests alike. */
type Assert = Pick<typeof t, 'ok' | 'equal' | 'match' | 'same' | 'fail'>;

interface ErrorBody {
  error: { code: string; message: string; request_id: string };
}

/** Checks the error contract on a reply from httpRequest or rawRequest; returns the body. */
function isGatewayError(t: Assert, r: Reply | RawReply, status: number, code: string): ErrorBody | null {
  t.equal(r.status, status, `status ${status}`);
  const headers = r.headers as Record<string, string | string[] | undefined>;
  t.match(headers['content-type'], /^application\/json/, 'JSON content type');
  let body: ErrorBody;
  try {
    body = JSON.parse(r.body) as ErrorBody;
  } catch {
    t.fail(`body is not JSON: ${JSON.stringify(r.body)}`);
    return null;
  }
  t.same(Object.keys(body), ['error'], 'one top-level key: error');
  t.same(Object.keys(body.error).sort(), ['code', 'message', 'request_id'], 'error has code, message, request_id');
  t.equal(body.error.code, code, `code ${code}`);
  t.ok(typeof body.error.message === 'string' && body.error.message.length > 0, 'a message');
  t.ok(body.error.request_id.length > 0, 'a request id');
  t.equal(headers['x-request-id'], body.error.request_id, 'x-request-id header equals request_id');
  // Repeats would arrive joined with ', ': the exact value means one header.
  t.equal(headers['x-sluice-cache'], 'bypass', 'one x-sluice-cache header: bypass');
  if ('rawHeaders' in r) t.same(cacheHeaders(r), ['bypass'], 'x-sluice-cache appears once');
  return body;
}

/** Every x-sluice-cache value as received. */
function cacheHeaders(r: Reply): string[] {
  return r.rawHeaders.filter((_, i) => i % 2 === 1 && r.rawHeaders[i - 1]!.toLowerCase() === 'x-sluice-cache');
}

t.test('400 for malformed requests', async (t) => {
  const [simPort] = await replicaPorts(gw, 'demo-1');
  const before = (await simStats(simPort!)).requests;

  // The node front end (the default for plain HTTP) answers these with a JSON 400 and
  // closes (test/proxy/front-end.test.ts); uWebSockets.js 20.30 (TLS) closes the connection
  // without an answer. What a user relies on is that the request is refused and nothing of
  // it reaches the model server (request smuggling).
  const refused = [
    'POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 12abc\r\n\r\n',
  ];
  for (const head of refused) {
    const r = await rawRequest(gw.port, head).catch((err: Error) => err);
    if (r instanceof Error) {
      t.match(r.message, /closed=true\): ""/, `refused by closing the connection: ${JSON.stringify(head.split('\r\n')[2])}`);
    } else {
      isGatewayError(t, r, 400, 'SLUICE_ERR_BAD_REQUEST');
    }
  }

  // Refused by the front end's parser or by the gateway's own checks, with JSON either way.
  const badTe = await rawRequest(gw.port, 'POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n');
  isGatewayError(t, badTe, 400, 'SLUICE_ERR_BAD_REQUEST');
  t.match(JSON.parse(badTe.body).error.message, /transfer/i);
  const twoLengths = await rawRequest(gw.port, 'POST /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc');
  isGatewayError(t, twoLengths, 400, 'SLUICE_ERR_BAD_REQUEST');
  const longId = await rawRequest(gw.port, `GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nX-Request-Id: ${'x'.repeat(201)}\r\n\r\n`);
  isGatewayError(t, longId, 400, 'SLUICE_ERR_BAD_REQUEST');

  t.equal((await simStats(simPort!)).requests, before, 'no malformed request reached the model server');
  const emptyId = await rawRequest(gw.port, 'GET /demo-1/_sim/echo HTTP/1.1\r\nHost: gw\r\nX-Request-Id:\r\n\r\n');
  t.equal(emptyId.status, 200, 'an empty x-request-id is no id, not a bad request');
  t.match(emptyId.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-4/, 'sluice makes one');
});

t.test('404 for paths no deployment serves', async (t) => {
  // (GET / answers as Ollama does: test/proxy/model-routing.test.ts.)
  for (const path of ['/nope-1/x', '/nope', '/demo-2/api/generate']) {
    const r = await httpRequest(`${gw.url}${path}`, { headers: { 'x-request-id': `nf-${path}` } });
    const body = isGatewayError(t, r, 404, 'SLUICE_ERR_NO_ROUTE');
    t.equal(body?.error.request_id, `nf-${path}`, `the client's request id is kept (${path})`);
  }
});

t.test('405 for unsupported methods', async (t) => {
  const trace = await rawRequest(gw.port, 'TRACE /demo-1/x HTTP/1.1\r\nHost: gw\r\n\r\n');
  isGatewayError(t, trace, 405, 'SLUICE_ERR_METHOD_NOT_ALLOWED');
  t.ok(trace.headers.allow, 'an Allow header');
  const post = await httpRequest(`${gw.url}/healthz`, { method: 'POST', body: '{}' });
  isGatewayError(t, post, 405, 'SLUICE_ERR_METHOD_NOT_ALLOWED');
  t.match(post.headers.allow, /GET/);
});

t.test("the gateway port's health endpoints carry x-sluice-cache: bypass", async (t) => {
  // cold-1 never starts, which holds readiness back at start-up: /readyz is 503 here.
  for (const [path, status] of [['/healthz', 200], ['/readyz', 503]] as const) {
    const r = await httpRequest(`${gw.url}${path}`);
    t.equal(r.status, status, path);
    t.same(cacheHeaders(r), ['bypass'], `${path}: one x-sluice-cache header`);
  }
});

t.test('413 when the body exceeds limits.max_body_bytes', async (t) => {
  // Declared too large: answered from the head alone, before any body byte is sent.
  const declared = await rawRequest(gw.port, `POST /demo-1/_sim/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`);
  isGatewayError(t, declared, 413, 'SLUICE_ERR_BODY_TOO_LARGE');
  t.match(declared.body, /\(limits\.max_body_bytes\)/, 'the message names the setting');

  // Chunked, so the size is only known as it arrives: cut off once it goes over.
  const piece = Buffer.alloc(64 * 1024, 0x61);
  const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
  const pieces = Array.from({ length: (MAX_BODY / piece.length) * 2 }, () => chunk);
  const chunked = await rawRequest(gw.port, 'POST /demo-1/_sim/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n', { body: pieces, timeoutMs: 10_000 });
  isGatewayError(t, chunked, 413, 'SLUICE_ERR_BODY_TOO_LARGE');
  t.match(chunked.body, /\(limits\.max_body_bytes\)/, 'the message names the setting');
  t.ok(chunked.closed, 'the connection is closed (the rest of the body is not read)');

  // Exactly at the limit is fine.
  const ok = await httpRequest(`${gw.url}/demo-1/_sim/upload`, { method: 'POST', body: Buffer.alloc(MAX_BODY, 1) });
  t.equal(ok.status, 200);
  t.equal(JSON.parse(ok.body).bytes, MAX_BODY);
});

t.test('502 when the upstream refuses or resets the connection', async (t) => {
  const refused = await httpRequest(`${gw.url}/refused-1/v1/models`);
  isGatewayError(t, refused, 502, 'SLUICE_ERR_UPSTREAM_CONNECT');
  // Accepted, then dropped before answering: a reset, whether by FIN or by RST.
  const reset = await httpRequest(`${gw.url}/reset-1/v1/models`);
  isGatewayError(t, reset, 502, 'SLUICE_ERR_UPSTREAM_RESET');
  const rst = await httpRequest(`${gw.url}/rst-1/v1/models`);
  isGatewayError(t, rst, 502, 'SLUICE_ERR_UPSTREAM_RESET');
});

t.test('a pooled connection the upstream dropped is retried on a fresh one, unseen by the client', async (t) => {
  for (let i = 0; i < 3; i++) {
    const r = await httpRequest(`${gw.url}/stale-1/x`);
    t.equal(r.status, 200, `request ${i + 1} succeeded`);
    t.equal(r.body, 'ok');
  }
  t.equal(staleConnections, 3, 'each request after the first found its pooled connection dead and opened a new one');
});

t.test("an upstream's own error passes through untouched, not rewrapped", async (t) => {
  const r = await httpRequest(`${gw.url}/busy-1/api/generate`, { method: 'POST', headers: { 'x-request-id': 'busy' }, body: '{"model":"demo","prompt":"hi"}' });
  t.equal(r.status, 503);
  t.same(JSON.parse(r.body), { error: 'server busy, please try again.  maximum pending requests exceeded' }, "Ollama's body, as Ollama wrote it");
  t.match(r.headers['content-type'], /^application\/json/);
  t.equal(r.headers['x-request-id'], 'busy');
  const oa = await httpRequest(`${gw.url}/busy-1/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'x' }] }) });
  t.equal(oa.status, 503, 'a stream that fails before starting is a plain JSON error');
  t.match(JSON.parse(oa.body), { error: { type: 'api_error' } }, 'in the OpenAI shape the upstream used');
});

t.test('503 when no replica becomes ready within the hold', async (t) => {
  const r = await httpRequest(`${gw.url}/cold-1/anything`);
  isGatewayError(t, r, 503, 'SLUICE_ERR_NOT_READY_TIMEOUT');
  t.ok(r.headers['retry-after'], 'a Retry-After header');
  // The outage shows in the deployment's metrics, though no upstream was contacted.
  const text = await metricsText(gw);
  t.ok(metric(text, 'sluice_requests_total', { deployment: 'cold-1', code: '503' }) >= 1, 'sluice_requests_total counts the 503');
});

t.test('504 when the upstream sends no headers in time', async (t) => {
  const started = Date.now();
  const r = await httpRequest(`${gw.url}/hang-1/api/generate`, { method: 'POST', headers: { 'x-request-id': 'hung' }, body: '{"model":"demo","prompt":"hi"}' });
  const took = Date.now() - started;
  isGatewayError(t, r, 504, 'SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT');
  t.ok(took >= 250 && took < 2_000, `answered after ${took} ms (headers_timeout_ms: 300)`);
  // The upstream request is abandoned for real, not left running.
  const [port] = await replicaPorts(gw, 'hang-1');
  await eventually(async () => (await simStats(port!)).cancellations.find((c) => c.request_id === 'hung'), 3_000, 'the hung request to be cancelled upstream');
});

t.test('idle timeout mid-stream ends an SSE stream with an error event', async (t) => {
  const r = await httpRequest(`${gw.url}/slow-1/v1/chat/completions`, {
    method: 'POST',
    headers: { 'x-request-id': 'sse-idle' },
    body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  t.equal(r.status, 200, 'the stream had started');
  t.match(r.headers['content-type'], /^text\/event-stream/);
  t.ok(r.complete, 'the stream ended cleanly, not by a cut connection');
  const events = r.body.split('\n\n').filter((e) => e !== '');
  t.ok(events.length >= 2, 'at least one token event before the error');
  t.match(events[0], /^data: \{/, 'a token came through first');
  const last = events[events.length - 1]!;
  const m = /^event: error\ndata: (.*)$/.exec(last);
  t.ok(m, `the final event is an error event: ${JSON.stringify(last)}`);
  if (m) {
    const body = JSON.parse(m[1]!) as ErrorBody;
    t.equal(body.error.code, 'SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT');
    t.equal(body.error.request_id, 'sse-idle');
  }
  const [port] = await replicaPorts(gw, 'slow-1');
  await eventually(async () => (await simStats(port!)).cancellations.find((c) => c.request_id === 'sse-idle'), 3_000, 'the stalled generation to be cancelled upstream');
});

t.test('idle timeout mid-stream ends an NDJSON stream with an error line', async (t) => {
  const r = await httpRequest(`${gw.url}/slow-1/api/generate`, { method: 'POST', headers: { 'x-request-id': 'ndjson-idle' }, body: '{"model":"demo","prompt":"hi"}' });
  t.equal(r.status, 200);
  t.ok(r.complete, 'the stream ended cleanly');
  t.ok(r.body.endsWith('\n'), 'the last line is complete');
  const lines = r.body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { response?: string; error?: ErrorBody['error'] });
  t.equal(lines[0]!.response, 'tok0 ', 'a token came through first');
  const last = lines[lines.length - 1]!;
  t.same(Object.keys(last), ['error'], 'the final line is an error object');
  t.match(last.error, { code: 'SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT', message: String, request_id: 'ndjson-idle' });
});

t.test('an upstream that dies mid-stream: final JSON error line, and the failure is logged', async (t) => {
  const requestId = `crash-${Date.now()}`;
  const r = await httpRequest(`${gw.url}/crashy-1/api/generate`, { method: 'POST', headers: { 'x-request-id': requestId }, body: '{"model":"demo","prompt":"hi"}' });
  t.equal(r.status, 200);
  t.ok(r.complete, 'the stream ended cleanly');
  const lines = r.body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { response?: string; error?: ErrorBody['error'] });
  t.same(lines.slice(0, 3).map((l) => l.response), ['tok0 ', 'tok1 ', 'tok2 '], 'the three tokens produced before the crash came through');
  const last = lines[lines.length - 1]!;
  t.equal(last.error?.code, 'SLUICE_ERR_UPSTREAM_RESET');
  t.equal(last.error?.request_id, requestId);

  // The gateway keeps running; its log has the failure with the request id and code,
  // without waiting for shutdown to flush it.
  const entry = await eventually(() => jsonLogs(gw).find((l) => l.request_id === requestId), 5_000, 'a log line for the failed request');
  t.equal(entry.error, 'SLUICE_ERR_UPSTREAM_RESET');
  t.equal(entry.route, 'crashy-1');
  t.equal(entry.status, 200);
  t.equal(gw.child.exitCode, null, 'the gateway is still running');
});

t.test('a stream cut inside a line: the error event or line follows the last whole line, never the half one', async (t) => {
  const sse = await httpRequest(`${gw.url}/cut-1/cut-sse`, { headers: { 'x-request-id': 'cut-sse' } });
  t.equal(sse.status, 200);
  t.ok(sse.complete, 'the stream ended cleanly');
  t.match(sse.body, /^data: \{"n":1\}\n\nevent: error\ndata: \{"error":\{"code":"SLUICE_ERR_UPSTREAM_RESET"[^\n]*\}\n\n$/, `the half event is not sent: ${JSON.stringify(sse.body)}`);
  const ndjson = await httpRequest(`${gw.url}/cut-1/cut-ndjson`, { headers: { 'x-request-id': 'cut-ndjson' } });
  t.equal(ndjson.status, 200);
  const lines = ndjson.body.split('\n');
  t.equal(lines.pop(), '', 'the last line is complete');
  t.same(lines.map((l) => Object.keys(JSON.parse(l) as object)[0]), ['n', 'error'], `one whole line, then the error line: ${JSON.stringify(ndjson.body)}`);
});

t.test('a stream whose lines arrive in pieces arrives whole, its last line even without a line end', async (t) => {
  const sse = await httpRequest(`${gw.url}/cut-1/split-sse`);
  t.equal(sse.body, 'data: {"n":1}\n\ndata: {"n":2}\n\n');
  const ndjson = await httpRequest(`${gw.url}/cut-1/split-ndjson`);
  t.equal(ndjson.body, '{"n":1}\n{"n":2}\n{"n":3}');
});

t.test('gateway errors before the response are logged with request id and code', async (t) => {
  // Its one replica refused an earlier request: ejected, it is answered without a try now.
  const r = await httpRequest(`${gw.url}/refused-1/x`, { headers: { 'x-request-id': 'refused-logged' } });
  t.ok(r.status >= 500, 'a gateway error');
  const entry = await eventually(() => jsonLogs(gw).find((l) => l.request_id === 'refused-logged'), 5_000, 'a log line');
  t.equal(entry.error, errorOf(r)?.code);
  t.equal(entry.status, r.status);
  // The gateway's 4xx too (the access log is off here), with the body bytes read for them.
  const body = '{"model":"nope","messages":[]}';
  const answered = [
    await httpRequest(`${gw.url}/no-such-route/x`, { headers: { 'x-request-id': 'no-route-logged' } }),
    await httpRequest(`${gw.url}/healthz`, { method: 'PUT', headers: { 'x-request-id': 'method-logged' } }),
    await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'x-request-id': 'no-model-logged', 'content-type': 'application/json' }, body }),
  ];
  t.same(answered.map((a) => a.status), [404, 405, 404]);
  for (const [id, code, bytes] of [['no-route-logged', 'SLUICE_ERR_NO_ROUTE', 0], ['method-logged', 'SLUICE_ERR_METHOD_NOT_ALLOWED', 0], ['no-model-logged', 'SLUICE_ERR_MODEL_NOT_FOUND', body.length]] as const) {
    const line = await eventually(() => jsonLogs(gw).find((l) => l.request_id === id), 5_000, `a log line for ${id}`);
    t.match(line, { error: code, request_bytes: bytes }, `${id}: logged with its code and the ${bytes} body bytes read`);
  }
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
