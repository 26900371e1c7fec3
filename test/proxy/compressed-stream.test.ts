// A compressed event stream (Content-Encoding gzip on text/event-stream: a server behind a
// compressing middleware, for a client that accepts gzip, as the SDKs do) goes through
// chunk by chunk: its bytes are no lines the gateway can wait for the end of. A failure
// mid-stream cuts it, since an `event: error` written into gzip would be no event at all.
//
// Every port of this file: 26550 (the upstream), 26551-26553 (replicas: none spawned); the
// gateway and admin ports are ephemeral.

import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { constants, createGzip, gunzipSync } from 'node:zlib';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';

const UPSTREAM_PORT = 26550;
const EVENTS = 8;
const EVERY_MS = 150;
let gw: Gateway;
let upstream: Server;

t.before(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const failing = req.url!.includes('/fail/');
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      const gz = createGzip();
      gz.pipe(res);
      let i = 0;
      const timer = setInterval(() => {
        gz.write(`data: {"choices":[{"index":0,"delta":{"content":"tok${i} "}}]}\n\n`);
        // Each event compressed and sent at once, as a streaming server's middleware does.
        gz.flush(constants.Z_SYNC_FLUSH);
        if (++i < EVENTS) return;
        clearInterval(timer);
        // The last flush goes out first (zlib works off the thread).
        if (failing) setTimeout(() => res.socket!.destroy(), 50);
        else gz.end('data: [DONE]\n\n');
      }, EVERY_MS);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    ports: { from: 26551, to: 26553 },
    deployments: [{
      model: 'gz', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false },
      policies: { retry: { attempts: 0 }, breaker: { enabled: false } },
    }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

interface Received { status: number; encoding: string | undefined; arrivals: number[]; body: Buffer; complete: boolean }

/** The raw (still compressed) body as it arrives, with the time of each piece. */
function stream(path: string): Promise<Received> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}${path}`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' } }, (res: IncomingMessage) => {
      const arrivals: number[] = [];
      const parts: Buffer[] = [];
      const done = (): void => resolve({ status: res.statusCode!, encoding: res.headers['content-encoding'], arrivals, body: Buffer.concat(parts), complete: res.complete });
      res.on('data', (c: Buffer) => {
        arrivals.push(performance.now() - started);
        parts.push(c);
      });
      res.on('end', done);
      res.on('close', done);
      res.on('error', done);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'gz-1', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
  });
}

t.test('the events arrive as the server sends them, not all at its end', async (t) => {
  const got = await stream('/gz-1/v1/chat/completions');
  t.equal(got.status, 200);
  t.equal(got.encoding, 'gzip', 'as the server sent it');
  t.ok(got.complete, 'ended whole');
  const text = gunzipSync(got.body).toString();
  t.equal(text.match(/^data: \{/gm)?.length, EVENTS, `${EVENTS} events, which decode`);
  t.match(text, /data: \[DONE\]\n\n$/);
  const total = (EVENTS - 1) * EVERY_MS;
  t.ok(got.arrivals.length >= EVENTS / 2, `${got.arrivals.length} pieces`);
  t.ok(got.arrivals[0]! < got.arrivals.at(-1)! - total / 2, `first bytes at ${Math.round(got.arrivals[0]!)} ms, the last at ${Math.round(got.arrivals.at(-1)!)} ms (held to the end: both at once)`);
});

t.test('a failure mid-stream cuts the connection: nothing of the gateway\'s is written into the gzip body', async (t) => {
  const got = await stream('/gz-1/fail/v1/chat/completions');
  t.equal(got.status, 200);
  t.notOk(got.complete, 'the body is cut, not ended');
  t.notOk(got.body.includes('event: error'), 'no plain-text event in the compressed bytes');
  const text = gunzipSync(got.body, { finishFlush: constants.Z_SYNC_FLUSH }).toString();
  t.equal(text.match(/^data: \{/gm)?.length, EVENTS, 'what the server sent decodes, all of it');
});
