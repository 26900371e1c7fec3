// The access log: one pino line per proxied request (log.access: true) with the request
// id the client got back, the route, the status, the upstream replica and the durations,
// total (duration_ms) and to the upstream's response head (ttfb_ms).

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { AccessLog } from '../../src/proxy/access-log.js';
import { LineWriter } from '../../src/telemetry/line-writer.js';
import { httpRequest } from '../helpers/http.js';
import { seededRandom } from '../helpers/random.js';
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

t.test('a front-door request refused once its body was read is logged with the time it took, not 0', async (t) => {
  // The body's model is read before routing: an upload of 600 ms, then an unknown model.
  const socket = connect(gw.port, '127.0.0.1');
  const body = '{"model":"no-such-model","messages":[]}';
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: access-log-slow-refusal\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
  await new Promise((resolve) => setTimeout(resolve, 600));
  socket.end(body.slice(10));
  socket.resume();
  const line = await accessLine('access-log-slow-refusal');
  t.match(line, { status: 404, error: 'SLUICE_ERR_MODEL_NOT_FOUND', route: null });
  t.ok((line.duration_ms as number) >= 550, `duration_ms ${String(line.duration_ms)}: from the head's arrival to the answer`);
  socket.destroy();
});

t.test('a client request id that needs escaping is logged as sent', async (t) => {
  const id = 'quote"back\\slash-\u00e9';
  const r = await httpRequest(`${gw.url}/demo/api/tags`, { headers: { 'x-request-id': id } });
  t.equal(r.status, 200);
  t.equal(r.headers['x-request-id'], id, 'echoed as sent');
  const line = await accessLine(id);
  t.equal(line.request_id, id, 'the line is valid JSON and carries the id unchanged');
});

/** Sends `head` (bytes as given: raw UTF-8 where a client puts it) on its own connection; the answer, read to its end. */
function rawRequest(head: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(gw.url).port), '127.0.0.1');
    const parts: Buffer[] = [];
    socket.on('data', (b: Buffer) => parts.push(b));
    socket.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    socket.on('error', reject);
    socket.write(head);
  });
}

// Header values are bytes: read one character per byte, a client's UTF-8 had shown in the
// log and the error bodies as its Latin-1 reading (`é` as `Ã©`).
t.test('a request id in UTF-8 is logged, and put in error bodies, as the text its bytes say', async (t) => {
  const id = 'req-café-✓';
  const ok = await rawRequest(Buffer.from(`GET /demo/api/tags HTTP/1.1\r\nHost: x\r\nx-request-id: ${id}\r\nConnection: close\r\n\r\n`, 'utf8'));
  t.match(ok, /^HTTP\/1\.1 200 /);
  t.match(ok, `\r\nx-request-id: ${id}\r\n`, 'the id echoed byte for byte');
  t.equal((await accessLine(id)).route, 'demo-1');
  const refused = await rawRequest(Buffer.from(`GET /nobody-here/x HTTP/1.1\r\nHost: x\r\nx-request-id: ${id}-404\r\nConnection: close\r\n\r\n`, 'utf8'));
  t.match(refused, /^HTTP\/1\.1 404 /);
  t.equal((JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4)) as { error: { request_id: string } }).error.request_id, `${id}-404`, 'the error body names the id as sent');
  t.equal((await accessLine(`${id}-404`)).status, 404);
});

/**
 * An AccessLog writing to a file of its own (removed with the test) through a LineWriter
 * with `writerOptions`; `lines()` closes the writer and reads what it wrote.
 */
function fileAccessLog(t: Test, writerOptions: { bufferBytes: number; maxBufferBytes: number }, worker: number): { log: AccessLog; lines(): Promise<string[]> } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-access-line-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'w');
  const writer = new LineWriter({ fd, ...writerOptions, flushIntervalMs: 0 });
  return {
    log: new AccessLog({ writer, all: true, sample: 1, worker }),
    async lines() {
      await writer.close(5000);
      closeSync(fd);
      return readFileSync(path, 'utf8').trim().split('\n');
    },
  };
}

t.test('durations print as milliseconds with at most three decimals, as JSON numbers', async (t) => {
  const { log, lines: written } = fileAccessLog(t, { bufferBytes: 0, maxBufferBytes: 1 << 20 }, 0);
  // [seconds, ttfb in ms] and the text each must print as.
  const cases: Array<[number, number | null, string, string]> = [
    [0.0012, 0.5, '1.2', '0.5'],
    [2, 1999.9996, '2000', '2000'],
    [0.0000004, 0, '0', '0'],
    [0.0123456, 0.0105, '12.346', '0.011'],
    [12.000001, null, '12000.001', 'null'],
  ];
  for (const [seconds, ttfb] of cases) {
    log.record('id', 'GET', '/p', '', null, null, 200, seconds, ttfb, 0, 0, 'bypass', undefined, null, null, null);
  }
  const lines = await written();
  t.equal(lines.length, cases.length);
  cases.forEach(([seconds, ttfb, duration, first], i) => {
    t.match(lines[i], `"duration_ms":${duration},"ttfb_ms":${first},"upstream_request_id":null,`, `${seconds} s, ${ttfb} ms`);
    const parsed = JSON.parse(lines[i]!) as Record<string, unknown>;
    t.equal(parsed.duration_ms, Math.round(seconds * 1e6) / 1e3, 'the same number as Math.round(us) / 1e3');
  });
});

t.test('every field of every line is its own request\'s, however the values repeat or change between lines', async (t) => {
  // The line is built from runs of fields kept while their values repeat: a run kept one
  // line too long would log the previous request's value.
  const { log, lines: written } = fileAccessLog(t, { bufferBytes: 4096, maxBufferBytes: 1 << 24 }, 3);
  const { pick } = seededRandom(0x1234567);
  const key = { name: 'team-a', digest: 'abcdef0123456789' } as Parameters<AccessLog['record']>[12];
  const draw = (i: number) => ({
    request_id: pick(['id-', 'id-', 'q"\\', 'é-', '\u0001-', '\ud83d\ude00', '\ud800']) + i, method: pick(['GET', 'POST']), path: pick(['/a-1/x', '/a-1/y', '/b-2/v1/chat/completions', '/p"q']),
    client: pick(['', '10.0.0.1', '::1']), route: pick([null, 'a-1', 'b-2']), upstream: pick([null, 'http://127.0.0.1:1', 'http://127.0.0.1:2']),
    status: pick([200, 200, 404, 502]), seconds: pick([0.001, 0.0025]), ttfb: pick([null, 0.5]), request_bytes: pick([0, 10, 10, 512]),
    response_bytes: pick([0, 301, 301]), cache: pick(['bypass', 'miss', 'hit', 'coalesced'] as const), key: pick([undefined, key]),
    error: pick([null, null, 'SLUICE_ERR_UPSTREAM_CONNECT'] as const), cost_usd: pick([null, null, 0.0001, 0.25]),
    upstream_request_id: pick([null, null, 'req_abc', 'req_abc', 'q"\\\n'])
  });
  const sent = Array.from({ length: 3_000 }, (_, i) => draw(i));
  for (const r of sent) {
    log.record(r.request_id, r.method, r.path, r.client, r.route, r.upstream, r.status, r.seconds, r.ttfb, r.request_bytes, r.response_bytes, r.cache, r.key, r.error, r.cost_usd, r.upstream_request_id);
  }
  const lines = (await written()).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines.length, sent.length, 'one line each');
  const wrong = sent.flatMap((r, i) => {
    const l = lines[i]!;
    const expected = {
      request_id: r.request_id, method: r.method, path: r.path, client: r.client === '' ? null : r.client, route: r.route, upstream: r.upstream,
      status: r.status, duration_ms: Math.round(r.seconds * 1e6) / 1e3, ttfb_ms: r.ttfb, request_bytes: r.request_bytes, response_bytes: r.response_bytes,
      cache: r.cache, key_label: r.key === undefined ? null : 'team-a#abcdef01', error: r.error, cost_usd: r.cost_usd, upstream_request_id: r.upstream_request_id, msg: 'request', worker: 3, level: 'info',
    };
    const off = Object.entries(expected).filter(([k, v]) => l[k] !== v).map(([k]) => k);
    return off.length === 0 ? [] : [`line ${i}: ${off.join(', ')}`];
  });
  t.same(wrong.slice(0, 5), [], `${wrong.length} of ${sent.length} lines with a field not their request's`);
});

t.test('the time of every line is the wall clock when it was recorded, as pino prints it, across milliseconds and seconds', async (t) => {
  // The line keeps the time's text while the millisecond and the second repeat: a text kept
  // too long, or a millisecond put with the wrong second, would show here.
  const { log, lines: written } = fileAccessLog(t, { bufferBytes: 1 << 16, maxBufferBytes: 1 << 26 }, 0);
  const bounds: Array<[number, number]> = [];
  const until = Date.now() + 1_100;
  for (let now = Date.now(); now < until; now = Date.now()) {
    while (Date.now() - now < 0.1 && bounds.length % 3 === 0) { /* some lines share a millisecond, others do not */ }
    const before = Date.now();
    log.record(`id-${bounds.length}`, 'GET', '/p', '', null, null, 200, 0, null, 0, 0, 'bypass', undefined, null, null, null);
    bounds.push([before, Date.now()]);
  }
  const times = (await written()).map((l) => (JSON.parse(l) as { time: string }).time);
  t.equal(times.length, bounds.length, 'one line each');
  const wrong = times.flatMap((time, i) => {
    const ms = Date.parse(time);
    const [before, after] = bounds[i]!;
    return new Date(ms).toISOString() === time && ms >= before && ms <= after ? [] : [`line ${i}: ${time}, recorded between ${new Date(before).toISOString()} and ${new Date(after).toISOString()}`];
  });
  t.same(wrong.slice(0, 3), [], `${wrong.length} of ${times.length} lines with another time`);
  t.ok(new Set(times.map((x) => x.slice(0, 19))).size >= 2, 'the lines span a change of second');
});
