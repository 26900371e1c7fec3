// Would another HTTP front end lift the AI request? The thinnest proxy on Node's own TCP
// handles, to compare with the thinnest one on uWS.js (upstream-clients.ts, sluice-pool):
// the client's request is read straight from the libuv stream into one buffer (the same
// internal StreamBase calls sluice's upstream client makes, see
// src/proxy/upstream/stream-handle-connection.ts), its head parsed in JavaScript (request
// line, Content-Length, Host and Connection taken out, every other line forwarded), the
// whole body sent on with sluice's UpstreamPool, and the answer written back in one write.
// No routing, ids, policies, logs, pipelining, chunked uploads or TLS: a ceiling for a
// front end of this kind, not a front end.
//
// Child mode (started by the bench, pinned like the other proxies):
//   node dist-bench/raw-front-end.js --port 29035 --upstream-port 29011
// prints {"event":"listening","port":N} once it accepts.

import { createServer, type Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Proc, ProcessGroup } from './lib/procs.js';
import { CollectingExchange, type SluicePool, type SluicePoolCtor } from './upstream-clients.js';

/** Starts the raw front end on `port`, forwarding to the upstream on `upstreamPort`. */
export async function startRawFrontEnd(group: ProcessGroup, cpus: string | null, upstreamPort: number, port: number, connections: number): Promise<Proc> {
  return group.start({
    name: 'proxy-raw-front-end',
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), '--port', String(port), '--upstream-port', String(upstreamPort), '--connections', String(connections)],
    cpus,
  }, { line: /"event":"listening"/ });
}

// ---- child mode -------------------------------------------------------------------------

interface WriteReq {
  oncomplete: (status: number) => void;
}
interface StreamHandle {
  writeLatin1String(req: WriteReq, data: string): number;
  onread: (arrayBuffer: ArrayBuffer) => unknown;
  useUserBuffer(buf: Uint8Array): void;
}

const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding('stream_wrap');
const STATE = binding['streamBaseState'] as Int32Array;
const READ_BYTES = binding['kReadBytesOrError'] as number;
const LAST_WRITE_ASYNC = binding['kLastWriteWasAsync'] as number;
const WriteWrap = binding['WriteWrap'] as new () => WriteReq;
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const HEAD_END = Buffer.from('\r\n\r\n');

let pool: SluicePool;
let upstreamHost = '';

/** A client connection, and the exchange of its current request (no pipelining). */
class ClientConnection extends CollectingExchange {
  readonly socket: Socket;
  readonly handle: StreamHandle;
  #req: WriteReq = new WriteWrap();
  /** Bytes of a request not yet whole (a head or body split over reads). */
  #partial: Buffer | null = null;

  constructor(socket: Socket) {
    super();
    this.socket = socket;
    this.handle = (socket as unknown as { _handle: StreamHandle })._handle;
    this.handle.useUserBuffer(READ_BUFFER);
    const nodeOnRead = this.handle.onread;
    this.handle.onread = (arrayBuffer: ArrayBuffer): unknown => {
      const n = STATE[READ_BYTES]!;
      if (n <= 0) return nodeOnRead.call(this.handle, arrayBuffer);
      this.#onData(READ_BUFFER.subarray(0, n));
      return undefined;
    };
    socket.on('error', () => socket.destroy());
  }

  #onData(data: Buffer): void {
    let buf = data;
    if (this.#partial !== null) buf = Buffer.concat([this.#partial, data]);
    const headEnd = buf.indexOf(HEAD_END);
    if (headEnd < 0) {
      this.#partial = Buffer.from(buf);
      return;
    }
    const text = buf.toString('latin1', 0, headEnd + 2);
    const lineEnd = text.indexOf('\r\n');
    const requestLine = text.slice(0, lineEnd);
    let lines = '';
    let contentLength = 0;
    for (let at = lineEnd + 2; at < text.length;) {
      const end = text.indexOf('\r\n', at);
      const colon = text.indexOf(':', at);
      const name = text.slice(at, colon).toLowerCase();
      if (name === 'content-length') contentLength = Number(text.slice(colon + 1, end).trim());
      else if (name !== 'host' && name !== 'connection') lines += text.slice(at, end + 2);
      at = end + 2;
    }
    const bodyStart = headEnd + 4;
    if (buf.length - bodyStart < contentLength) {
      this.#partial = Buffer.from(buf);
      return;
    }
    this.#partial = null;
    const body = Buffer.from(buf.subarray(bodyStart, bodyStart + contentLength));
    // The method and target as the client sent them, before its HTTP version.
    const methodAndTarget = requestLine.slice(0, requestLine.lastIndexOf(' '));
    this.head = `${methodAndTarget} HTTP/1.1\r\nhost: ${upstreamHost}\r\ncontent-length: ${contentLength}\r\n${lines}\r\n`;
    this.chunks = [];
    this.body = body;
    const conn = pool.acquire(this);
    if (conn !== null) conn.send(this, this.head, false, body, true);
  }

  onResponseEnd(): void {
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const answer = `HTTP/1.1 ${this.status} OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.toString('latin1')}`;
    if (this.handle.writeLatin1String(this.#req, answer) !== 0) this.socket.destroy();
    else if (STATE[LAST_WRITE_ASYNC] !== 0) this.#req = new WriteWrap();
  }

  onResponseError(): void {
    this.socket.destroy();
  }

  corked(fn: () => void): void {
    fn();
  }
}

async function serve(): Promise<void> {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, 'upstream-port': { type: 'string' }, connections: { type: 'string', default: '64' } },
    strict: true,
  });
  const port = Number(values.port);
  const upstreamPort = Number(values['upstream-port']);
  upstreamHost = `127.0.0.1:${upstreamPort}`;
  const mod = (await import(new URL('../dist/proxy/upstream/index.js', import.meta.url).href)) as { UpstreamPool: SluicePoolCtor };
  pool = new mod.UpstreamPool({ host: '127.0.0.1', port: upstreamPort, maxConnections: Number(values.connections), idleMs: 300_000 });
  const server = createServer({ noDelay: true }, (socket) => new ClientConnection(socket));
  process.on('SIGTERM', () => process.exit(0));
  server.listen(port, '127.0.0.1', 4096, () => process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  serve().catch((err: unknown) => {
    process.stderr.write(`raw-front-end: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
