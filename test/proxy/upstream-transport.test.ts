// The upstream client's public-API path, end to end: a gateway started with
// SLUICE_UPSTREAM_TRANSPORT=socket moves upstream bytes with net.Socket ('data' events,
// write, pause/resume, cork) instead of Node's internal stream handle, and must behave the
// same: bodies both ways, streams relayed chunk by chunk, keep-alive reuse, backpressure
// both ways, a client abort closing the upstream connection, the same error codes. It
// says so in /metrics and in one warning; a gateway left to choose takes the fast path.

import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import t from 'tap';
import { httpRequest, json, metric } from '../helpers/http.js';
import { errorOf, refusingPort } from '../helpers/policy.js';
import { eventually, jsonLogs, metricsText, sleep, startGateway, type Gateway } from '../helpers/procs.js';

const MiB = 1024 * 1024;
const EVENTS = 10;
const EVENT_MS = 50;
/** What "bounded" means for bytes in flight through the gateway while one side stalls. */
const IN_FLIGHT_BUDGET = 64 * MiB;
const UPLOAD_STALL_AT = 64 * MiB;
const TRANSPORT_METRIC = 'sluice_upstream_transport';

// Replica ports 18490-18499 belong to this file (test/proxy uses 18400-18499): the gateway
// allocates 18490-18497, 18499 is a replica that refuses connections.
let gw: Gateway;
let upstream: Server;
/** Sockets the upstream accepted, in order. */
const accepted: Socket[] = [];
/** Sockets that had their first request answered at /stale. */
const staleServed = new Set<Socket>();
let eventsClosedAt = 0;
let downloadSent = 0;
let uploadStall: ((received: number) => void) | null = null;

/**
 * The upstream for what the simulator cannot show: which connection served a request, how
 * far it got writing to or reading from a stalled peer, when its socket closed.
 */
function startUpstream(): Promise<number> {
  upstream = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const socket = req.socket;
    switch (url.pathname) {
      case '/whoami':
        res.end(String(accepted.indexOf(socket)));
        return;
      case '/stale':
        // The race of a server closing an idle keep-alive connection as the gateway reuses it.
        if (staleServed.has(socket)) {
          socket.destroy();
          return;
        }
        staleServed.add(socket);
        res.end('ok');
        return;
      case '/reset':
        socket.destroy();
        return;
      case '/garbage':
        socket.end('HTTP/1.1 two hundred\r\n\r\n');
        return;
      case '/events': {
        // `n` events EVENT_MS apart, or events until the connection closes.
        const n = Number(url.searchParams.get('n') ?? Infinity);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const timer = setInterval(() => {
          res.write(`data: ${i++}\n\n`);
          if (i === n) res.end();
        }, EVENT_MS);
        res.once('close', () => clearInterval(timer));
        socket.once('close', () => (eventsClosedAt = Date.now()));
        return;
      }
      case '/download': {
        // As fast as the gateway takes it: the count stops growing when it pushes back.
        const total = Number(url.searchParams.get('bytes'));
        const piece = Buffer.alloc(MiB, 0x61);
        downloadSent = 0;
        res.writeHead(200, { 'content-length': String(total) });
        const pump = (): void => {
          while (downloadSent < total) {
            downloadSent += piece.length;
            if (!res.write(piece)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      case '/upload-stall': {
        // Reads UPLOAD_STALL_AT bytes, stops reading for a second, then reads the rest.
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          hash.update(chunk);
          if (uploadStall !== null && bytes >= UPLOAD_STALL_AT) {
            const report = uploadStall;
            uploadStall = null;
            req.pause();
            setTimeout(() => {
              report(bytes);
              req.resume();
            }, 1_000);
          }
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
        return;
      }
      default:
        res.statusCode = 404;
        res.end();
    }
  });
  upstream.on('connection', (s: Socket) => accepted.push(s));
  return new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve((upstream.address() as { port: number }).port)));
}

t.before(async () => {
  const upstreamPort = await startUpstream();
  const refusedPort = await refusingPort(18499);
  gw = await startGateway({
    ports: { from: 18490, to: 18497 },
    limits: { max_body_bytes: 512 * MiB },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim' },
      // Health checks off: these upstreams misbehave on purpose and must stay routed.
      { model: 'up', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${upstreamPort}`] },
      { model: 'refused', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${refusedPort}`] },
    ],
  }, { SLUICE_UPSTREAM_TRANSPORT: 'socket' });
});
t.teardown(async () => {
  await gw?.stop();
  upstream?.closeAllConnections();
  upstream?.close();
});

t.test('/metrics and the log say the upstream client runs net_socket', async (t) => {
  const text = await metricsText(gw);
  t.equal(metric(text, TRANSPORT_METRIC, { transport: 'net_socket' }), 1);
  t.equal(metric(text, TRANSPORT_METRIC, { transport: 'stream_handle' }), 0);
  const warnings = jsonLogs(gw).filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('public net.Socket API'));
  t.equal(warnings.length, 1, 'one warning');
  t.equal(warnings[0]?.['forced'], true, 'forced by the environment');
});

t.test('a GET and POSTs with small and large bodies are answered correctly', async (t) => {
  const get = await httpRequest(`${gw.url}/demo-1/_sim/echo?q=1`, { headers: { 'x-probe': 'yes' } });
  t.equal(get.status, 200);
  const echoed = json<{ method: string; url: string; headers: Record<string, string> }>(get);
  t.equal(echoed.method, 'GET');
  t.equal(echoed.url, '/_sim/echo?q=1');
  t.equal(echoed.headers['x-probe'], 'yes');
  // A small body leaves in one buffer with the head; a large one in pieces behind it.
  for (const size of [1024, MiB]) {
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i++) body[i] = (i * 31) & 0xff;
    const r = await httpRequest(`${gw.url}/demo-1/_sim/upload`, { method: 'POST', body });
    t.equal(r.status, 200, `${size} bytes: 200`);
    t.same(json(r), { bytes: size, sha256: createHash('sha256').update(body).digest('hex') }, `${size} bytes: exactly the body sent`);
  }
});

t.test('an SSE stream is relayed event by event as the upstream writes it, byte for byte', async (t) => {
  const r = await httpRequest(`${gw.url}/up-1/events?n=${EVENTS}`);
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'text/event-stream');
  t.equal(r.body, Array.from({ length: EVENTS }, (_, i) => `data: ${i}\n\n`).join(''), 'every event, in order');
  t.ok(r.chunks.length >= EVENTS / 2, `arrived in ${r.chunks.length} separate chunks (>= ${EVENTS / 2})`);
  const spread = r.chunks[r.chunks.length - 1]!.at - r.chunks[0]!.at;
  t.ok(spread >= (EVENTS - 1) * EVENT_MS * 0.7, `spread over ${spread.toFixed(0)} ms as written, not buffered to the end`);
});

t.test('upstream connections are kept alive and reused', async (t) => {
  const before = accepted.length;
  const served: string[] = [];
  for (let i = 0; i < 5; i++) served.push((await httpRequest(`${gw.url}/up-1/whoami`)).body);
  // One new connection at most: an earlier test may have left one idle in the pool.
  t.ok(accepted.length - before <= 1, `${accepted.length - before} new upstream connections for five requests`);
  t.same(new Set(served).size, 1, `all served by connection ${served[0]}`);
});

t.test('a reused connection the upstream dropped is retried on a fresh one; a reset, a refusal and garbage are 502s', async (t) => {
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${gw.url}/up-1/stale`)).body, 'ok', `request ${i + 1} succeeded`);
  t.equal(staleServed.size, 3, 'each request after the first found its pooled connection dead and opened a new one');
  for (const [path, code] of [['/refused-1/x', 'SLUICE_ERR_UPSTREAM_CONNECT'], ['/up-1/reset', 'SLUICE_ERR_UPSTREAM_RESET'], ['/up-1/garbage', 'SLUICE_ERR_UPSTREAM_PROTOCOL']]) {
    const r = await httpRequest(`${gw.url}${path}`);
    t.equal(r.status, 502, `${path}: 502`);
    t.equal(errorOf(r)?.code, code, `${path}: ${code}`);
  }
});

t.test('a client that goes away closes the upstream connection at once', async (t) => {
  eventsClosedAt = 0;
  const r = await httpRequest(`${gw.url}/up-1/events`, { abortWhen: (body) => body.includes('data:') });
  t.equal(r.status, 200);
  t.not(r.abortedAt, null, 'the client aborted after the first event');
  const closedAt = await eventually(() => (eventsClosedAt > 0 ? eventsClosedAt : undefined), 5_000, 'the upstream socket to close');
  t.ok(closedAt - r.abortedAt! <= 500, `the upstream saw its connection closed ${closedAt - r.abortedAt!} ms after the abort`);
});

t.test('a large download to a client that stops reading: the gateway stops reading the upstream', async (t) => {
  const total = 256 * MiB;
  const res = await fetch(`${gw.url}/up-1/download?bytes=${total}`);
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  let received = 0;
  let gapDuringStall = -1;
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    received += read.value.length;
    if (gapDuringStall === -1 && received >= 32 * MiB) {
      // Read nothing for a second: the gateway must stop reading what the upstream keeps sending.
      await sleep(1_000);
      gapDuringStall = downloadSent - received;
    }
  }
  t.equal(received, total, 'every byte arrived');
  t.ok(gapDuringStall >= 0 && gapDuringStall < IN_FLIGHT_BUDGET,
    `after a 1 s stall the upstream was ${(gapDuringStall / MiB).toFixed(1)} MiB ahead of the client (budget ${IN_FLIGHT_BUDGET / MiB} MiB)`);
});

t.test('an upstream that stops reading an upload: the gateway stops reading the client', async (t) => {
  const total = 256 * MiB;
  const pieces = Array.from({ length: 8 }, (_, k) => Buffer.alloc(MiB, k + 1));
  const expected = createHash('sha256');
  for (let i = 0; i < total / MiB; i++) expected.update(pieces[i % pieces.length]!);
  let sent = 0;
  let gapDuringStall = -1;
  uploadStall = (upstreamReceived) => (gapDuringStall = sent - upstreamReceived);
  // fetch pulls the next piece only when it can send it: `sent` is what the gateway took.
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === total) return controller.close();
      controller.enqueue(pieces[(sent / MiB) % pieces.length]!);
      sent += MiB;
    },
  }, { highWaterMark: 0 });
  const res = await fetch(`${gw.url}/up-1/upload-stall`, { method: 'POST', body, duplex: 'half' } as RequestInit);
  t.equal(res.status, 200);
  t.same(await res.json(), { bytes: total, sha256: expected.digest('hex') }, 'the upstream received exactly the body');
  t.ok(gapDuringStall >= 0 && gapDuringStall < IN_FLIGHT_BUDGET,
    `after a 1 s stall the client was ${(gapDuringStall / MiB).toFixed(1)} MiB ahead of the upstream (budget ${IN_FLIGHT_BUDGET / MiB} MiB)`);
});

t.test('a gateway left to choose runs the stream_handle fast path on this Node', async (t) => {
  // `native` is the default; set explicitly so that a suite run with the fallback forced
  // still checks the default. Failing here after a Node upgrade means the internals moved.
  const other = await startGateway({ ports: { from: 18498, to: 18498 }, deployments: [] }, { SLUICE_UPSTREAM_TRANSPORT: 'native' });
  t.teardown(() => other.stop());
  const text = await metricsText(other);
  t.equal(metric(text, TRANSPORT_METRIC, { transport: 'stream_handle' }), 1);
  t.equal(metric(text, TRANSPORT_METRIC, { transport: 'net_socket' }), 0);
  t.notOk(other.lines.some((l) => l.includes('public net.Socket API')), 'no warning about the net.Socket API');
});

t.test('an unknown SLUICE_UPSTREAM_TRANSPORT stops the gateway from starting', async (t) => {
  await t.rejects(startGateway({ ports: { from: 18498, to: 18498 }, deployments: [] }, { SLUICE_UPSTREAM_TRANSPORT: 'fast' }), /SLUICE_UPSTREAM_TRANSPORT must be "native" or "socket"/);
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
