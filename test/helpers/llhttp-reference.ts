// Node's own HTTP/1.1 client (llhttp, through the public `node:http`) as the reference
// the upstream response parser is compared with. A loopback `net` server answers each
// request with raw bytes registered under the request's `x-case` header, written in the
// given pieces, then closes its side (EOF); the client side is `http.request` without an
// agent, and records what it made of them.

import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { createRequire } from 'node:module';

/** What a client made of a response, llhttp's or sluice's. */
export interface Outcome {
  /** A final (non-1xx) head was delivered. */
  head: boolean;
  status: number;
  /** Flat [name, value, ...] as received (rawHeaders). */
  headers: string[];
  /** Body bytes, latin1. */
  body: string;
  /** The response ended as a whole (llhttp: the response's 'end'; sluice: onComplete). */
  complete: boolean;
  /** The first error, if any (for llhttp, also one after the response completed: bytes past its end). */
  error: string | null;
}

interface Plan {
  pieces: Buffer[];
}

/** The raw-bytes server both clients talk to. */
export class RawServer {
  readonly #server: Server;
  readonly #plans = new Map<string, Plan>();
  readonly #sockets = new Set<Socket>();
  #nextId = 0;
  port = 0;

  constructor() {
    this.#server = createServer((s) => this.#serve(s));
  }

  async listen(): Promise<void> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    this.port = address.port;
  }

  close(): void {
    for (const s of this.#sockets) s.destroy();
    this.#server.close();
  }

  /** Registers bytes to answer with (in `pieces`, one write each); returns the case id for the `x-case` header. */
  register(pieces: Buffer[]): string {
    const id = String(++this.#nextId);
    this.#plans.set(id, { pieces });
    return id;
  }

  #serve(s: Socket): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => {}); // the client may hang up early (a parse error): expected
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) return;
      s.off('data', onData);
      const m = /\r\nx-case: *(\d+)/i.exec(got.toString('latin1', 0, end));
      const plan = m === null ? undefined : this.#plans.get(m[1]!);
      if (plan === undefined) {
        s.destroy();
        return;
      }
      this.#plans.delete(m![1]!);
      this.#write(s, plan.pieces, 0);
      s.resume(); // drain what else the client sends
    };
    s.on('data', onData);
  }

  /** Writes the pieces one per event-loop turn, so the client reads them apart (mostly), then EOF. */
  #write(s: Socket, pieces: Buffer[], i: number): void {
    if (s.destroyed) return;
    if (i === pieces.length) {
      s.end();
      return;
    }
    s.write(pieces[i]!);
    setImmediate(() => this.#write(s, pieces, i + 1));
  }
}

export interface ReferenceOptions {
  method?: string;
  /** Node's default is 16 KiB; sluice allows a 64 KiB head, so the reference is given the same bound. */
  maxHeaderSize?: number;
}

/** What Node's http client (llhttp) makes of `raw` sent as the answer to one request, then EOF. */
export async function llhttp(server: RawServer, raw: Buffer, opts: ReferenceOptions = {}): Promise<Outcome> {
  const id = server.register([raw]);
  const out: Outcome = { head: false, status: 0, headers: [], body: '', complete: false, error: null };
  await new Promise<void>((resolve) => {
    const req = request({
      host: '127.0.0.1',
      port: server.port,
      method: opts.method ?? 'GET',
      path: '/',
      agent: false,
      headers: { 'x-case': id },
      maxHeaderSize: opts.maxHeaderSize ?? 64 * 1024,
    });
    const fail = (err: NodeJS.ErrnoException): void => {
      out.error ??= err.code ?? err.message;
    };
    req.on('response', (res) => {
      out.head = true;
      out.status = res.statusCode ?? 0;
      out.headers = res.rawHeaders;
      res.on('data', (d: Buffer) => (out.body += d.toString('latin1')));
      res.on('end', () => (out.complete = true));
      res.on('error', fail);
    });
    req.on('error', fail);
    // 'close' comes after the socket closed; a response's 'end' may still be queued behind it.
    req.on('close', () => setImmediate(resolve));
    req.end();
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// The request side: Node's own llhttp in REQUEST mode, through the HTTPParser binding that
// node:http's server drives (node:_http_common), initialised as the server does it (no
// lenient flags, the given maxHeaderSize), fed the bytes at once and then EOF (finish()).
// Synchronous and socket-free, so a differential test can afford thousands of cases.

interface HttpParserBinding {
  new (): {
    initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
    execute(data: Buffer): number | Error;
    finish(): undefined | Error;
    close(): void;
    [key: number]: unknown;
  };
  REQUEST: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientNone: number;
}

const httpCommon = createRequire(import.meta.url)('_http_common') as { HTTPParser: HttpParserBinding; methods: string[] };

/** One request as llhttp read it. */
export interface LlhttpRequest {
  method: string;
  url: string;
  /** Flat [name, value, ...] as received (rawHeaders). */
  headers: string[];
  versionMinor: number;
  /** Body bytes, latin1. */
  body: string;
  complete: boolean;
  /** llhttp stops after it: an upgrade (Upgrade + Connection: upgrade) or CONNECT. */
  upgrade: boolean;
  keepAlive: boolean;
}

export interface LlhttpRequests {
  requests: LlhttpRequest[];
  /** The llhttp error code (HPE_...), from execute() or from finish() at EOF; null if none. */
  error: string | null;
}

/** What llhttp in request mode (as node:http's server sets it up) makes of `raw`, then EOF. */
export function llhttpRequests(raw: Buffer, maxHeaderSize = 16 * 1024): LlhttpRequests {
  const { HTTPParser, methods } = httpCommon;
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.REQUEST, {}, maxHeaderSize, HTTPParser.kLenientNone);
  const requests: LlhttpRequest[] = [];
  let current: LlhttpRequest | null = null;
  // More than 32 header lines come in kOnHeaders batches, as node:http collects them.
  let pending: string[] = [];
  let pendingUrl = '';
  parser[HTTPParser.kOnHeaders] = (headers: string[], url: string): void => {
    pending.push(...headers);
    pendingUrl += url;
  };
  parser[HTTPParser.kOnHeadersComplete] = (_major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _s: unknown, _m: unknown, upgrade: boolean, keepAlive: boolean): number => {
    current = { method: methods[method] ?? String(method), url: url || pendingUrl, headers: headers ?? pending, versionMinor: minor, body: '', complete: false, upgrade, keepAlive };
    pending = [];
    pendingUrl = '';
    requests.push(current);
    return 0;
  };
  parser[HTTPParser.kOnBody] = (b: Buffer): void => {
    current!.body += b.toString('latin1');
  };
  parser[HTTPParser.kOnMessageComplete] = (): void => {
    current!.complete = true;
    // Trailer lines came in kOnHeaders: node:http hands them over as trailers and starts afresh.
    pending = [];
    pendingUrl = '';
  };
  let error: string | null = null;
  const r = parser.execute(raw);
  if (r instanceof Error) error = (r as NodeJS.ErrnoException).code ?? r.message;
  else {
    const f = parser.finish();
    if (f instanceof Error) error = (f as NodeJS.ErrnoException).code ?? f.message;
  }
  parser.close();
  return { requests, error };
}
