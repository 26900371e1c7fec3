// Large bodies both ways stream through the gateway with bounded memory: a 1 GiB upload
// and a 1 GiB download (whose client stalls for a second midway) arrive complete and
// byte-exact while the gateway's resident memory stays flat. Chunked uploads too.

import { createHash } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { rssBytes, sleep, startGateway, type Gateway } from '../helpers/procs.js';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;
// What "bounded" means here: the transfer is 1 GiB; a gateway that buffered even half of
// it would blow well past this.
const RSS_BUDGET = 300 * MiB;

// Replica ports 18410-18419 belong to this file (test/proxy uses 18400-18499).
let gw: Gateway;
let idleRss: number;
let stallServer: Server;
let stallRss = 0;

/**
 * An upstream that reads an upload halfway, stops reading for a second, then finishes: the
 * gateway must push back on the client meanwhile, not buffer what the client keeps sending.
 */
function startStallServer(): Promise<number> {
  stallServer = createServer((req, res) => {
    const hash = createHash('sha256');
    const half = Number(req.headers['x-stall-after'] ?? Infinity);
    let bytes = 0;
    let stalled = false;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
      if (!stalled && bytes >= half) {
        stalled = true;
        req.pause();
        setTimeout(() => {
          stallRss = rssBytes(gw.child.pid!);
          req.resume();
        }, 1_000);
      }
    });
    req.on('end', () => {
      const body = JSON.stringify({ bytes, sha256: hash.digest('hex') });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve) => stallServer.listen(0, '127.0.0.1', () => resolve((stallServer.address() as { port: number }).port)));
}

t.before(async () => {
  const stallPort = await startStallServer();
  gw = await startGateway({
    ports: { from: 18410, to: 18419 },
    limits: { max_body_bytes: 2 * GiB },
    log: { level: 'info', access: false },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim' },
      // Health checks off: the stalling upstream counts what it is sent.
      { model: 'stall', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: [`http://127.0.0.1:${stallPort}`] },
    ],
  });
  // Warm up the paths once, then take the idle baseline.
  await httpRequest(`${gw.url}/demo-1/_sim/download?bytes=1000000`);
  await httpRequest(`${gw.url}/demo-1/_sim/upload`, { method: 'POST', body: Buffer.alloc(1_000_000) });
  await sleep(200);
  idleRss = rssBytes(gw.child.pid!);
});
t.teardown(async () => {
  await gw?.stop();
  stallServer?.closeAllConnections();
  stallServer?.close();
});

/** Samples the gateway's RSS every 50 ms until stopped; returns the peak. */
/**
 * Sends a body piece by piece with backpressure (`next` returns null when done) and
 * resolves with the response's status and text.
 */
function streamUpload(url: string, method: string, headers: Record<string, string>, next: () => Buffer | null): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    const write = (): void => {
      for (let piece = next(); piece !== null; piece = next()) {
        if (!req.write(piece)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

function sampleRss(pid: number): { stop(): number } {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // process gone: the test will fail elsewhere
    }
  }, 50);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

// The simulator's download pattern: byte i is i % 251.
const PERIOD = 251;
const PATTERN = Buffer.alloc(PERIOD * Math.ceil((4 * MiB + PERIOD) / PERIOD));
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = i % PERIOD;

t.test('1 GiB upload streams through with backpressure and bounded memory', async (t) => {
  // Sent chunked: uWebSockets.js 20.30 refuses a Content-Length of 10 digits or more
  // (>= 1e9 bytes) by closing the connection, so a 1 GiB body can only be streamed.
  const sampler = sampleRss(gw.child.pid!);
  t.teardown(() => void sampler.stop());
  const piece = Buffer.alloc(MiB);
  for (let i = 0; i < piece.length; i++) piece[i] = (i * 7 + 3) & 0xff;
  const expected = createHash('sha256');
  let sent = 0;
  let n = 0;
  const result = await streamUpload(`${gw.url}/demo-1/_sim/upload`, 'POST', { 'content-type': 'application/octet-stream' }, () => {
    if (sent >= GiB) return null;
    // Vary the content per MiB so a dropped or repeated piece changes the hash.
    piece[0] = n++ & 0xff;
    expected.update(piece);
    sent += piece.length;
    // A copy: the request may hold the buffer until it is flushed.
    return Buffer.from(piece);
  });
  const peak = sampler.stop();
  t.equal(result.status, 200);
  const body = JSON.parse(result.body) as { bytes: number; sha256: string };
  t.equal(body.bytes, GiB, 'the upstream received every byte');
  t.equal(body.sha256, expected.digest('hex'), 'and exactly these bytes');
  t.ok(peak - idleRss < RSS_BUDGET, `gateway RSS grew by ${((peak - idleRss) / MiB).toFixed(0)} MiB (budget ${RSS_BUDGET / MiB} MiB; idle ${(idleRss / MiB).toFixed(0)} MiB)`);
});

t.test('an upstream that stops reading mid-upload: the gateway pushes back instead of buffering', async (t) => {
  const size = 768 * MiB;
  const sampler = sampleRss(gw.child.pid!);
  t.teardown(() => void sampler.stop());
  // Pieces prepared up front so the client sends much faster than the upstream reads.
  const pieces = Array.from({ length: 8 }, (_, k) => Buffer.alloc(MiB, k + 1));
  const expected = createHash('sha256');
  for (let i = 0; i < size / MiB; i++) expected.update(pieces[i % pieces.length]!);
  let i = 0;
  const result = await streamUpload(`${gw.url}/stall-1/upload`, 'POST', { 'x-stall-after': String(size / 4) },
    () => (i < size / MiB ? pieces[i++ % pieces.length]! : null));
  const peak = sampler.stop();
  t.equal(result.status, 200);
  t.same(JSON.parse(result.body), { bytes: size, sha256: expected.digest('hex') });
  t.ok(stallRss > 0, 'the upstream did stall');
  t.ok(stallRss - idleRss < RSS_BUDGET, `RSS at the end of the upstream's 1 s stall: +${((stallRss - idleRss) / MiB).toFixed(0)} MiB`);
  t.ok(peak - idleRss < RSS_BUDGET, `gateway RSS grew by ${((peak - idleRss) / MiB).toFixed(0)} MiB (budget ${RSS_BUDGET / MiB} MiB)`);
});

t.test('a large upload with a Content-Length streams through too', async (t) => {
  const size = 256 * MiB;
  const sampler = sampleRss(gw.child.pid!);
  t.teardown(() => void sampler.stop());
  const piece = Buffer.alloc(MiB, 0x5a);
  const expected = createHash('sha256');
  let sent = 0;
  const result = await streamUpload(`${gw.url}/demo-1/_sim/upload`, 'PUT', { 'content-length': String(size) }, () => {
    if (sent >= size) return null;
    expected.update(piece);
    sent += piece.length;
    return piece;
  });
  const peak = sampler.stop();
  t.equal(result.status, 200);
  t.same(JSON.parse(result.body), { bytes: size, sha256: expected.digest('hex') });
  t.ok(peak - idleRss < RSS_BUDGET, `gateway RSS grew by ${((peak - idleRss) / MiB).toFixed(0)} MiB`);
});

t.test('1 GiB download to a client that stalls midway: complete, exact, bounded memory', async (t) => {
  const sampler = sampleRss(gw.child.pid!);
  t.teardown(() => void sampler.stop());
  let received = 0;
  let mismatchAt = -1;
  let stalled = false;
  let rssDuringStall = 0;
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${gw.url}/demo-1/_sim/download?bytes=${GiB}`, { agent: false }, (res) => {
      t.equal(res.headers['content-length'], String(GiB), 'content-length is passed through');
      res.on('data', (chunk: Buffer) => {
        for (let off = 0; off < chunk.length && mismatchAt === -1; off += 4 * MiB) {
          const part = chunk.subarray(off, off + 4 * MiB);
          const start = (received + off) % PERIOD;
          if (!part.equals(PATTERN.subarray(start, start + part.length))) mismatchAt = received + off;
        }
        received += chunk.length;
        if (!stalled && received >= GiB / 2) {
          // Read nothing for a second: the gateway must stop reading from the upstream
          // instead of buffering what keeps coming.
          stalled = true;
          res.pause();
          setTimeout(() => {
            rssDuringStall = rssBytes(gw.child.pid!);
            res.resume();
          }, 1_000);
        }
      });
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  const peak = sampler.stop();
  t.equal(status, 200);
  t.equal(received, GiB, 'every byte arrived');
  t.equal(mismatchAt, -1, 'every byte is the one the upstream sent');
  t.ok(stalled, 'the client did stall midway');
  t.ok(rssDuringStall - idleRss < RSS_BUDGET, `RSS after a 1 s stall: +${((rssDuringStall - idleRss) / MiB).toFixed(0)} MiB`);
  t.ok(peak - idleRss < RSS_BUDGET, `gateway RSS grew by ${((peak - idleRss) / MiB).toFixed(0)} MiB (budget ${RSS_BUDGET / MiB} MiB)`);
});

t.test('a chunked upload (no content-length) arrives intact', async (t) => {
  const parts: Buffer[] = [];
  let size = 1;
  for (let total = 0; total < 8 * MiB; ) {
    // Odd sizes, from 1 byte to ~1 MiB, so chunk boundaries land everywhere.
    const b = Buffer.alloc(size);
    for (let i = 0; i < b.length; i++) b[i] = (total + i) % 253;
    parts.push(b);
    total += size;
    size = (size * 3 + 1) % (MiB + 7);
  }
  const whole = Buffer.concat(parts);
  const result = await new Promise<{ status: number; body: string; te: string | undefined }>((resolve, reject) => {
    const req = request(`${gw.url}/demo-1/_sim/upload`, { method: 'POST', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, te: req.getHeader('transfer-encoding') as string | undefined }));
    });
    req.on('error', reject);
    let i = 0;
    const write = (): void => {
      while (i < parts.length) if (!req.write(parts[i++]!)) return void req.once('drain', write);
      req.end();
    };
    write();
  });
  t.equal(result.status, 200);
  const body = JSON.parse(result.body) as { bytes: number; sha256: string };
  t.equal(body.bytes, whole.length);
  t.equal(body.sha256, createHash('sha256').update(whole).digest('hex'));

  // And an empty chunked body.
  const empty = await new Promise<string>((resolve, reject) => {
    const req = request(`${gw.url}/demo-1/_sim/upload`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d));
      res.on('end', () => resolve(b));
    });
    req.on('error', reject);
    req.end();
  });
  t.same(JSON.parse(empty), { bytes: 0, sha256: createHash('sha256').digest('hex') });
});

t.test('small bodies of changing sizes, one after another and at once, each arrive exactly', async (t) => {
  // A head and a small body leave in one write built in a buffer the thread reuses: no
  // request may get another's bytes, or a longer one's tail.
  const bodyOf = (size: number, seed: number): Buffer => {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i++) b[i] = (i * 7 + seed) & 0xff;
    return b;
  };
  const upload = async (body: Buffer): Promise<unknown> => {
    const r = await httpRequest(`${gw.url}/demo-1/_sim/upload`, { method: 'POST', body, headers: { 'x-pad': 'p'.repeat(body.length % 97) } });
    return r.status === 200 ? JSON.parse(r.body) : r.status;
  };
  const digest = (b: Buffer): { bytes: number; sha256: string } => ({ bytes: b.length, sha256: createHash('sha256').update(b).digest('hex') });
  for (const [i, size] of [16_000, 1, 4_000, 300, 15_999, 7, 12_000].entries()) {
    const body = bodyOf(size, i);
    t.same(await upload(body), digest(body), `${size} bytes after the one before`);
  }
  const bodies = Array.from({ length: 24 }, (_, i) => bodyOf(1 + ((i * 2_731) % 16_000), 100 + i));
  const answers = await Promise.all(bodies.map(upload));
  t.same(answers, bodies.map(digest), '24 at once: each exactly its own');
});

t.test('the gateway wrote no warnings (e.g. uncorked uWS writes) to stderr', async (t) => {
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
