// A late joiner of a coalesced request catches up at its client's pace. Its catch-up (what
// the flight recorded before it came, up to max_entry_bytes) was written all at once, so each
// late joiner that did not read held a copy of it: 100 of them, 3 MB into a stream, grew the
// gateway by ~270 MiB here. Now each holds about one catch-up write (256 KiB) beyond what its
// socket took, goes on as it drains, then gets the live reads; what it gets is the stream.
// (test/proxy/flight-pace.test.ts checks that joiners still keep up with a fast upstream.)

import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rssBytes, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// A model server that sends 3 MB of large events at once, then small ones, one every
// millisecond, for some seconds: late joiners come while it drips, 3 MB recorded.
const SERVER = `
const http = require('node:http');
const big = 'data: {"choices":[{"index":0,"delta":{"content":"' + 'x'.repeat(30 * 1024) + '"}}]}\\n\\n';
const small = (i) => 'data: {"choices":[{"index":0,"delta":{"content":" tok' + i + '"}}]}\\n\\n';
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.method === 'GET') return res.end('ok');
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let bigLeft = 100;
    let i = 0;
    const burst = () => {
      while (bigLeft > 0) {
        bigLeft--;
        if (!res.write(big)) return res.once('drain', burst);
      }
      drip();
    };
    const drip = () => {
      if (i === 6000) return res.end('data: [DONE]\\n\\n');
      res.write(small(i++));
      setTimeout(drip, 1);
    };
    burst();
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
`;

const dir = mkdtempSync(join(tmpdir(), 'sluice-late-joiner-'));
const script = join(dir, 'server.cjs');
// This file's gateway allocates its model server's port from 23545-23549.
let gw: Gateway;
const PATH = '/late-1/v1/chat/completions';

t.before(async () => {
  writeFileSync(script, SERVER);
  gw = await startGateway({
    ports: { from: 23545, to: 23549 },
    log: { level: 'info', access: false },
    deployments: [{ model: 'late', version: '1', runtime: 'command', command: ['node', script, '{port}'], readiness_path: '/' }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const bodyOf = (prompt: string): string => JSON.stringify({ model: 'late', stream: true, temperature: 0, messages: [{ role: 'user', content: prompt }] });

/** The whole answer's digest and size, read as fast as it comes. */
function fetchWhole(body: string, onHead?: () => void): Promise<{ cache: string; bytes: number; digest: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}${PATH}`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      onHead?.();
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      res.on('end', () => resolve({ cache: String(res.headers['x-sluice-cache']), bytes, digest: hash.digest('hex') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The peak resident memory since resetPeak (Linux: VmHWM, reset through clear_refs). */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) * 1024;
}

function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/**
 * `n` clients with a 4 KiB receive buffer each (Node cannot set SO_RCVBUF) that send the
 * request and read nothing until told to (a line on stdin); then the first `reading` read
 * their answers to the end (the process prints, per client, the bytes it got, whether its
 * chunked body ended and whether it was a hit) and the others close.
 */
function stalledClients(n: number, reading: number, body: string): { ready: Promise<void>; readAll(): Promise<string> } {
  const text = `POST ${PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const script = [
    'import socket, sys',
    'socks = []',
    `for i in range(${n}):`,
    '    s = socket.socket()',
    '    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)',
    `    s.connect(("127.0.0.1", ${gw.port}))`,
    `    s.sendall(${JSON.stringify(text)}.encode())`,
    '    socks.append(s)',
    'print("sent", flush=True)',
    'sys.stdin.readline()',
    `for s in socks[${reading}:]: s.close()`,
    `for s in socks[:${reading}]:`,
    '    s.settimeout(20)',
    '    got = b""',
    '    while True:',
    '        c = s.recv(1 << 20)',
    '        if not c: break',
    '        got += c',
    '    print(len(got), got.endswith(b"0\\r\\n\\r\\n"), b"x-sluice-cache: hit" in got[:1024], flush=True)',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  let sent!: () => void;
  const ready = new Promise<void>((r) => {
    sent = r;
  });
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString('latin1');
    if (out.startsWith('sent\n')) sent();
  });
  return {
    ready,
    readAll: () => {
      child.stdin.write('go\n');
      return new Promise((resolve) => child.on('close', () => resolve(out)));
    },
  };
}

t.test('late joiners that read nothing do not each hold the recording; one that reads gets the stream', async (t) => {
  const pid = gw.child.pid!;
  // The same stream once, alone: what a first stream allocates is not the late joiners'.
  await fetchWhole(bodyOf('warm-up'));
  const body = bodyOf('late joiners');
  let headed!: () => void;
  const head = new Promise<void>((r) => {
    headed = r;
  });
  const leader = fetchWhole(body, headed);
  await head;
  // The burst is recorded by now: the joiners below each have 3 MB to catch up on.
  await sleep(700);
  resetPeak(pid);
  const before = rssBytes(pid);
  const late = fetchWhole(body);
  const clients = stalledClients(100, 5, body);
  await clients.ready;
  await sleep(1500);
  const grown = (peakRss(pid) - before) / 1048576;
  t.comment(`gateway RSS ${Math.round(before / 1048576)} MiB, at most ${Math.round(before / 1048576 + grown)} MiB with 100 stalled late joiners`);
  t.ok(grown < 160, `the gateway grew by ${grown.toFixed(1)} MiB (a copy of the recording per joiner: ~370 MiB)`);
  const [led, got] = await Promise.all([leader, late]);
  t.equal(led.cache, 'miss');
  t.equal(got.cache, 'coalesced', 'the late reader joined the flight');
  t.ok(led.bytes > 3_000_000, `the stream is large (${led.bytes} bytes)`);
  t.equal(got.digest, led.digest, 'the late reader got the stream the leader got');
  const lines = (await clients.readAll()).trim().split('\n').slice(1);
  t.equal(lines.length, 5, 'the stalled clients that then read got an answer');
  for (const l of lines) t.match(l, / True False$/, `one got a whole stream (${l}), its head said coalesced, not hit`);
});
