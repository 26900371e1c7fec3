// Which HTTP client should a uWS proxy use towards its upstream? Three minimal proxies that
// differ only in that client, measured under the same load and pinning as nginx and sluice:
//   undici-pool     undici Pool.dispatch (one Pool, N connections)
//   undici-clients  one undici Client per connection slot, handed out from a free list
//   sluice-pool     sluice's own UpstreamPool / UpstreamConnection (dist/proxy/upstream)
// Each forwards GET <path> unchanged and answers with the upstream's status and body; no
// header forwarding, routing, ids or metrics, so each row is the ceiling that client allows,
// and the gap between the sluice-pool row and the sluice row is what sluice's own features
// and plumbing cost.
// sluice-pool also forwards POSTs with the client's headers and body (the AI section's
// uWS floor): the least a uWS proxy must do for the AI request, so its row is the ceiling
// of this HTTP layer on that request, whatever a gateway built on it adds.
//
// Child mode (started by the bench, pinned like the other proxies):
//   node dist-bench/upstream-clients.js --client undici-pool --port 29031 --upstream-port 29011
// prints {"event":"listening","port":N,"native":true} once it accepts.

import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Dispatcher } from 'undici';
import type { Proc, ProcessGroup } from './lib/procs.js';

export const CLIENT_KINDS = ['undici-pool', 'undici-clients', 'sluice-pool'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

export const CLIENT_LABELS: Readonly<Record<ClientKind, string>> = {
  'undici-pool': 'uWS + undici Pool.dispatch',
  'undici-clients': 'uWS + undici Client per slot',
  'sluice-pool': 'uWS + sluice UpstreamPool',
};

export interface ClientProxy {
  readonly kind: ClientKind;
  readonly port: number;
  readonly proc: Proc;
}

/**
 * Starts one minimal proxy per client kind (all by default) on consecutive ports from
 * `basePort`; `nodeArgs` lets a profiler in.
 */
export async function startClientProxies(
  group: ProcessGroup, cpus: string | null, upstreamPort: number, basePort: number, connections: number,
  kinds: readonly ClientKind[] = CLIENT_KINDS, nodeArgs: readonly string[] = [],
): Promise<ClientProxy[]> {
  const self = fileURLToPath(import.meta.url);
  const out: ClientProxy[] = [];
  for (const [i, kind] of kinds.entries()) {
    const port = basePort + i;
    const proc = await group.start({
      name: `proxy-${kind}`,
      command: process.execPath,
      args: [...nodeArgs, self, '--client', kind, '--port', String(port), '--upstream-port', String(upstreamPort), '--connections', String(connections)],
      cpus,
    }, { line: /"event":"listening"/ });
    const line = proc.stdout().split('\n').find((l) => l.includes('"listening"'))!;
    if ((JSON.parse(line) as { native: boolean }).native !== true) throw new Error(`${kind}: uWebSockets.js native binding not loaded`);
    out.push({ kind, port, proc });
  }
  return out;
}

// ---- child mode -------------------------------------------------------------------------

const JSON_TYPE = 'application/json';

function statusText(status: number): string {
  return status === 200 ? '200 OK' : `${status} Upstream`;
}

/** What every variant does with a finished upstream response: one corked write. */
function reply(res: HttpResponse, status: number, chunks: Buffer[]): void {
  res.writeStatus(statusText(status)).writeHeader('content-type', JSON_TYPE);
  res.end(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
}

function replyError(res: HttpResponse): void {
  res.writeStatus('502 Bad Gateway').end();
}

/** undici's raw (non-deprecated-wrapper) handler API: no header object is built per response. */
class UndiciExchange implements Dispatcher.DispatchHandler {
  readonly res: HttpResponse;
  aborted = false;
  status = 0;
  chunks: Buffer[] = [];
  readonly #done: ((ex: UndiciExchange) => void) | null;

  constructor(res: HttpResponse, done: ((ex: UndiciExchange) => void) | null) {
    this.res = res;
    this.#done = done;
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.aborted) abort();
  }

  onHeaders(status: number): boolean {
    this.status = status;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    if (!this.aborted) this.res.cork(() => reply(this.res, this.status, this.chunks));
    this.#done?.(this);
  }

  onError(): void {
    if (!this.aborted) this.res.cork(() => replyError(this.res));
    this.#done?.(this);
  }
}

/** The parts of sluice's upstream client this bench relies on (dist/proxy/upstream). */
export interface SluiceConnection {
  send(handler: CollectingExchange, head: string, noResponseBody: boolean, firstBody: Buffer | null, requestDone: boolean): boolean;
}
export interface SluicePool {
  acquire(waiter: CollectingExchange): SluiceConnection | null;
}
export type SluicePoolCtor = new (o: { host: string; port: number; maxConnections: number; idleMs: number }) => SluicePool;

/**
 * One request through sluice's upstream client, sent whole (head and body) and answered
 * whole: what the minimal proxies here and in raw-front-end.ts share. A subclass writes the
 * answer to its client.
 */
export abstract class CollectingExchange {
  head = '';
  /** The request body sent with the head (a POST), or null. */
  body: Buffer | null = null;
  aborted = false;
  status = 0;
  chunks: Buffer[] = [];

  onConnection(conn: SluiceConnection): boolean {
    if (this.aborted) return false;
    conn.send(this, this.head, false, this.body, true);
    return true;
  }

  onResponseHead(status: number): void {
    this.status = status;
  }

  onResponseData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }

  onRequestDrain(): void {}

  abstract onResponseEnd(): void;
  abstract onResponseError(): void;
  abstract corked(fn: () => void): void;
}

class SluiceExchange extends CollectingExchange {
  readonly res: HttpResponse;

  constructor(res: HttpResponse, head: string) {
    super();
    this.res = res;
    this.head = head;
  }

  // The connection calls this from inside corked(), like every parser callback.
  onResponseEnd(): void {
    if (!this.aborted) reply(this.res, this.status, this.chunks);
  }

  onResponseError(): void {
    if (!this.aborted) this.res.cork(() => replyError(this.res));
  }

  corked(fn: () => void): void {
    if (this.aborted) fn();
    else this.res.cork(fn);
  }
}

type Forward = (res: HttpResponse, url: string) => { aborted: boolean };

// The one forEach callback of the POST forwarder, writing into module scratch rather than
// a closure per request (as sluice's readClientHead does).
let headerLines = '';
function collectHeader(name: string, value: string): void {
  if (name !== 'host' && name !== 'connection' && name !== 'content-length') headerLines += `${name}: ${value}\r\n`;
}

/** Forwards a POST with the client's headers and its whole body (sluice-pool only). */
async function makePostForward(upstreamPort: number, connections: number): Promise<(res: HttpResponse, req: HttpRequest) => void> {
  const mod = (await import(new URL('../dist/proxy/upstream/index.js', import.meta.url).href)) as { UpstreamPool: SluicePoolCtor };
  const pool = new mod.UpstreamPool({ host: '127.0.0.1', port: upstreamPort, maxConnections: connections, idleMs: 300_000 });
  const host = `127.0.0.1:${upstreamPort}`;
  return (res, req) => {
    headerLines = '';
    req.forEach(collectHeader);
    const start = `POST ${req.getUrl()} HTTP/1.1\r\nhost: ${host}\r\n${headerLines}`;
    const chunks: Buffer[] = [];
    let ex: SluiceExchange | null = null;
    res.onAborted(() => {
      if (ex !== null) ex.aborted = true;
    });
    res.onData((ab, last) => {
      chunks.push(Buffer.from(ab.slice(0)));
      if (!last) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      ex = new SluiceExchange(res, `${start}content-length: ${body.length}\r\n\r\n`);
      ex.body = body;
      const conn = pool.acquire(ex);
      if (conn !== null) conn.send(ex, ex.head, false, body, true);
    });
  };
}

async function makeForward(kind: ClientKind, upstreamPort: number, connections: number): Promise<Forward> {
  const origin = `http://127.0.0.1:${upstreamPort}`;
  const host = `127.0.0.1:${upstreamPort}`;
  switch (kind) {
    case 'undici-pool': {
      const { Pool } = await import('undici');
      const pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 300_000 });
      return (res, url) => {
        const ex = new UndiciExchange(res, null);
        pool.dispatch({ path: url, method: 'GET', headers: { host } }, ex);
        return ex;
      };
    }
    case 'undici-clients': {
      const { Client } = await import('undici');
      const free = Array.from({ length: connections }, () => new Client(origin, { pipelining: 1, keepAliveTimeout: 300_000 }));
      const busy = new Map<UndiciExchange, InstanceType<typeof Client>>();
      const waiting: Array<[UndiciExchange, string]> = [];
      const start = (client: InstanceType<typeof Client>, ex: UndiciExchange, url: string): void => {
        busy.set(ex, client);
        client.dispatch({ path: url, method: 'GET', headers: { host } }, ex);
      };
      const done = (ex: UndiciExchange): void => {
        const client = busy.get(ex)!;
        busy.delete(ex);
        const next = waiting.shift();
        if (next !== undefined) start(client, next[0], next[1]);
        else free.push(client);
      };
      return (res, url) => {
        const ex = new UndiciExchange(res, done);
        const client = free.pop();
        if (client !== undefined) start(client, ex, url);
        else waiting.push([ex, url]);
        return ex;
      };
    }
    case 'sluice-pool': {
      const mod = (await import(new URL('../dist/proxy/upstream/index.js', import.meta.url).href)) as { UpstreamPool: SluicePoolCtor };
      const pool = new mod.UpstreamPool({ host: '127.0.0.1', port: upstreamPort, maxConnections: connections, idleMs: 300_000 });
      return (res, url) => {
        const ex = new SluiceExchange(res, `GET ${url} HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
        const conn = pool.acquire(ex);
        if (conn !== null) conn.send(ex, ex.head, false, null, true);
        return ex;
      };
    }
  }
}

async function serve(): Promise<void> {
  const { values } = parseArgs({
    options: {
      client: { type: 'string' },
      port: { type: 'string' },
      'upstream-port': { type: 'string' },
      connections: { type: 'string', default: '64' },
    },
    strict: true,
  });
  const kind = values.client as ClientKind;
  if (!CLIENT_KINDS.includes(kind)) throw new Error(`--client must be one of ${CLIENT_KINDS.join(', ')}`);
  const port = Number(values.port);
  // The package's entry silently swaps in a slow node:http fallback when the binary does
  // not load; only the native module exports getParts.
  const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof import('uWebSockets.js');
  const native = typeof (uws as unknown as Record<string, unknown>).getParts === 'function';
  const forward = await makeForward(kind, Number(values['upstream-port']), Number(values.connections));
  const app = uws.App();
  app.get('/*', (res, req) => {
    const ex = forward(res, req.getUrl());
    res.onAborted(() => {
      ex.aborted = true;
    });
  });
  if (kind === 'sluice-pool') app.post('/*', await makePostForward(Number(values['upstream-port']), Number(values.connections)));
  // A clean exit on SIGTERM, so that --cpu-prof can write its profile.
  process.on('SIGTERM', () => process.exit(0));
  app.listen('127.0.0.1', port, (token) => {
    if (!token) {
      process.stderr.write(`cannot listen on 127.0.0.1:${port}\n`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ event: 'listening', port, client: kind, native })}\n`);
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  serve().catch((err: unknown) => {
    process.stderr.write(`upstream-clients: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
