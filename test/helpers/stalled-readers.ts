// For the tests that a client which stops reading costs the gateway a bounded amount of
// memory (a cache hit, a late joiner, a slow joiner of a coalesced stream): they measure
// the same way, so that their thresholds compare. The peak is read rather than the resident
// memory after, since a collection meanwhile may free more than the stall holds; the stalled
// clients are python sockets because Node cannot set SO_RCVBUF, and without a small receive
// buffer the kernel takes megabytes off the gateway before anything stalls.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { startGateway, type Gateway } from './procs.js';

/** The peak resident memory since resetPeak (Linux: VmHWM, reset through clear_refs). */
export function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) * 1024;
}

export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** A whole HTTP/1.1 POST of a JSON `body` to `path`, as a raw client sends it. */
export function requestText(path: string, body: string): string {
  return `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

export interface WholeAnswer {
  status: number;
  cache: string;
  bytes: number;
  digest: string;
  /** 'length', or the transfer-encoding it came in. */
  framing: string;
}

/** The whole answer's digest and size, read as fast as it comes; `onHead` once its head is in. */
export function fetchWhole(url: string, body: string, onHead?: () => void): Promise<WholeAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      onHead?.();
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      res.on('end', () => resolve({
        status: res.statusCode!,
        cache: String(res.headers['x-sluice-cache']),
        bytes,
        digest: hash.digest('hex'),
        framing: res.headers['content-length'] !== undefined ? 'length' : String(res.headers['transfer-encoding']),
      }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * `n` clients of the gateway on `port` with a 4 KiB receive buffer each that send the
 * request and read nothing until told to (a line on stdin); then the first `reading` read
 * their answers to the end (the process prints, per client, the bytes it got, whether its
 * chunked body ended and whether it was a hit) and the others close.
 */
export function stalledClients(port: number, path: string, n: number, reading: number, body: string): { ready: Promise<void>; readAll(): Promise<string> } {
  const script = [
    'import socket, sys',
    'socks = []',
    `for i in range(${n}):`,
    '    s = socket.socket()',
    '    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)',
    `    s.connect(("127.0.0.1", ${port}))`,
    `    s.sendall(${JSON.stringify(requestText(path, body))}.encode())`,
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

/**
 * A gateway, started before `t`'s tests and stopped after them, whose one deployment
 * (`model`, version 1) runs the node model server `server` (a CommonJS script that listens
 * on the port given as its first argument, and answers GET / for readiness).
 */
export function gatewayOverServer(t: Test, opts: { model: string; ports: { from: number; to: number }; server: string; tmpPrefix: string }): { readonly gw: Gateway } {
  const dir = mkdtempSync(join(tmpdir(), opts.tmpPrefix));
  const script = join(dir, 'server.cjs');
  let gw: Gateway | undefined;
  t.before(async () => {
    writeFileSync(script, opts.server);
    gw = await startGateway({
      ports: opts.ports,
      log: { level: 'info', access: false },
      deployments: [{ model: opts.model, version: '1', runtime: 'command', command: ['node', script, '{port}'], readiness_path: '/' }],
    });
  });
  t.teardown(async () => {
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get gw(): Gateway {
      if (gw === undefined) throw new Error('the gateway is not started yet');
      return gw;
    },
  };
}

/**
 * The script of a model server for gatewayOverServer whose stream first sends `bigCount`
 * events of `bigKiB` KiB as fast as they are taken (enough to fill what the kernel buffers
 * towards a client that does not read), then `smallCount` small ones (`smallFields` before
 * their `choices`), one a millisecond, as a model's tokens come: each reaches the gateway as
 * a read of its own. With `holdMs`, one small event goes at once and the rest that much later,
 * so that a second client can join the stream before it grows.
 */
export function burstThenDripServer(o: { bigKiB: number; bigCount: number; smallCount: number; smallFields?: string; holdMs?: number }): string {
  const start = o.holdMs === undefined ? 'burst();' : `res.write(small(-1));\n    setTimeout(burst, ${o.holdMs});`;
  return `
const http = require('node:http');
const big = 'data: {"choices":[{"index":0,"delta":{"content":"' + 'x'.repeat(${o.bigKiB} * 1024) + '"}}]}\\n\\n';
const small = (i) => 'data: {${o.smallFields ?? ''}"choices":[{"index":0,"delta":{"content":" tok' + i + '"}}]}\\n\\n';
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.method === 'GET') return res.end('ok');
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let bigLeft = ${o.bigCount};
    let i = 0;
    const burst = () => {
      while (bigLeft > 0) {
        bigLeft--;
        if (!res.write(big)) return res.once('drain', burst);
      }
      drip();
    };
    const drip = () => {
      if (i === ${o.smallCount}) return res.end('data: [DONE]\\n\\n');
      res.write(small(i++));
      setTimeout(drip, 1);
    };
    ${start}
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
`;
}
