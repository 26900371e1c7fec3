// Helpers for the control-plane end-to-end tests (test/control): an admin API client,
// /proc views of process groups and listening sockets, a real redis-server, a stand-in
// model server for the `command` runtime, and the teardown check that no model server
// the gateway spawned is left behind.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { freePort } from '../fixtures/free-port.js';
import { startGateway, type Gateway } from './procs.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// Admin API client

export interface AdminReply<T = any> {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  body: T;
}

export interface AdminClient {
  readonly base: string;
  request<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<AdminReply<T>>;
  get<T = any>(path: string): Promise<AdminReply<T>>;
  post<T = any>(path: string, body?: unknown): Promise<AdminReply<T>>;
  del<T = any>(path: string): Promise<AdminReply<T>>;
  /** GET /v1/deployments/{id}; the body, or null on 404. */
  deployment(id: string): Promise<DeploymentView | null>;
  list(): Promise<DeploymentView[]>;
}

export interface ReplicaView {
  id: string;
  url: string;
  port: number;
  state: string;
  /** closed, open or half-open. */
  breaker: string;
  pid: number | null;
  restarts: number;
  last_error: string | null;
  /** Remote replicas with health checks on. */
  health: { status: string; check: string; consecutive_failures: number; consecutive_successes: number; last_error: string | null } | null;
}

export interface DeploymentView {
  id: string;
  model: string;
  version: string;
  runtime: string;
  state: string;
  source: string;
  route: string;
  last_error: string | null;
  /** The model name the server reported (runtimes that list it, e.g. llamacpp), once learnt. */
  served_model?: string | null;
  replicas: ReplicaView[];
}

/** `base` is the admin URL (`http://127.0.0.1:<adminPort>`); `token` is sent as a bearer token. */
export function adminClient(base: string, token?: string): AdminClient {
  const request = async <T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<AdminReply<T>> => {
    const h: Record<string, string> = { ...headers };
    if (token !== undefined && h.authorization === undefined) h.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const res = await fetch(base + path, { method, headers: h, body: payload, signal: AbortSignal.timeout(180_000) });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, text, body: parsed as T };
  };
  const client: AdminClient = {
    base,
    request,
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body),
    del: (path) => request('DELETE', path),
    async deployment(id) {
      const r = await request<DeploymentView>('GET', `/v1/deployments/${encodeURIComponent(id)}`);
      if (r.status === 404) return null;
      if (r.status !== 200) throw new Error(`GET /v1/deployments/${id}: ${r.status} ${r.text}`);
      return r.body;
    },
    async list() {
      const r = await request<{ deployments: DeploymentView[] }>('GET', '/v1/deployments');
      if (r.status !== 200) throw new Error(`GET /v1/deployments: ${r.status} ${r.text}`);
      return r.body.deployments;
    },
  };
  return client;
}

/** Polls `fn` until it returns something other than undefined/false. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await sleep(intervalMs);
  }
}

/** Waits until the deployment reaches `state` (and returns its view). */
export function waitState(admin: AdminClient, id: string, state: string, timeoutMs = 30_000): Promise<DeploymentView> {
  let last: DeploymentView | null = null;
  return waitFor(async () => {
    last = await admin.deployment(id);
    return last?.state === state ? last : undefined;
  }, timeoutMs, `${id} to be ${state}`).catch((err: Error) => {
    throw new Error(`${err.message}; last view: ${JSON.stringify(last)}`);
  });
}

// ---------------------------------------------------------------------------------------
// Data-plane requests. One connection per request, closed after it (agent: false sends
// `Connection: close`): an idle keep-alive connection left open to the gateway would make
// these tests depend on how the data plane treats idle clients at shutdown.

export interface GwReply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** Parsed JSON body, or undefined. */
  json: any;
  /** Body chunks with their arrival time (performance.now()). */
  chunks: Array<{ at: number; text: string }>;
  /** True when the response ended normally (false: cut by the server or a socket error). */
  complete: boolean;
}

export interface GwRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | object;
  timeoutMs?: number;
  /** Called with each body chunk as it arrives. */
  onChunk?: (text: string) => void;
  /** Resolves once the response headers are in. */
  onResponse?: (status: number) => void;
}

export function gwRequest(url: string, opts: GwRequestOptions = {}): Promise<GwReply> {
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (body !== undefined) headers['content-type'] ??= 'application/json';
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false }, (res) => {
      opts.onResponse?.(res.statusCode!);
      const chunks: GwReply['chunks'] = [];
      let text = '';
      let settled = false;
      const done = (complete: boolean): void => {
        if (settled) return;
        settled = true;
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json, chunks, complete });
      };
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        chunks.push({ at: performance.now(), text: c });
        text += c;
        opts.onChunk?.(c);
      });
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('close', () => done(res.complete));
    });
    req.on('error', reject);
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------
// Processes and sockets seen through /proc (Linux)

interface Stat {
  pid: number;
  state: string;
  pgid: number;
}

function readStat(pid: number): Stat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0] ?? '?', pgid: Number(rest[2]) };
  } catch {
    return null;
  }
}

function allPids(): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
}

/** True while `pid` exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  const s = readStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
}

/** Live (non-zombie) processes of a process group. */
export function groupPids(pgid: number): number[] {
  const out: number[] = [];
  for (const pid of allPids()) {
    const s = readStat(pid);
    if (s !== null && s.pgid === pgid && s.state !== 'Z' && s.state !== 'X') out.push(pid);
  }
  return out;
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

/** Live processes whose command line matches `re` (never this test process). */
export function processesMatching(re: RegExp): Array<{ pid: number; pgid: number; cmd: string }> {
  const out: Array<{ pid: number; pgid: number; cmd: string }> = [];
  for (const pid of allPids()) {
    if (pid === process.pid) continue;
    const cmd = cmdline(pid);
    if (!re.test(cmd)) continue;
    const s = readStat(pid);
    if (s === null || s.state === 'Z') continue;
    out.push({ pid, pgid: s.pgid, cmd });
  }
  return out;
}

const PORT_IN_CMD = /(?:--port[ =]|model-server\.mjs )(\d+)/;

/**
 * Model-server processes for one test file's replica port range: `sim --port N`,
 * `mlflow ... -p N` children with `--port N`, or the stand-in `model-server.mjs N`.
 */
export function serversInRange(from: number, to: number): Array<{ pid: number; pgid: number; cmd: string }> {
  return processesMatching(PORT_IN_CMD).filter((p) => {
    const port = Number(PORT_IN_CMD.exec(p.cmd)![1]);
    return port >= from && port <= to && !/\bserve --config\b/.test(p.cmd);
  });
}

/** Can a listener bind 127.0.0.1:port right now? (false while a server still holds it) */
export function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** Holds 127.0.0.1:port until close() (to make the allocator's bind check fail). */
export async function occupy(port: number): Promise<{ close(): Promise<void> }> {
  const s = createServer((sock) => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve());
  });
  return { close: () => new Promise<void>((r) => s.close(() => r())) };
}

/** Local addresses in LISTEN state on `port`, from /proc/net/tcp and tcp6 (e.g. ['127.0.0.1']). */
export function listenAddresses(port: number): string[] {
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== '0A') continue; // 0A = LISTEN
      const [addrHex, portHex] = f[1]!.split(':') as [string, string];
      if (parseInt(portHex, 16) !== port) continue;
      out.push(file.endsWith('6') ? ipv6(addrHex) : ipv4(addrHex));
    }
  }
  return out;
}

function ipv4(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255].join('.');
}

function ipv6(hex: string): string {
  if (/^0{32}$/.test(hex)) return '::';
  if (hex === '00000000000000000000000001000000') return '::1';
  if (hex.startsWith('0000000000000000FFFF0000')) return ipv4(hex.slice(24));
  return hex;
}

/**
 * Model servers still alive among `pids` (the gateway's replicas, as the admin API
 * reported them) or on the file's replica port range, after waiting up to `timeoutMs`
 * for them to go.
 */
export async function survivingServers(pids: Iterable<number>, range: { from: number; to: number }, timeoutMs = 5_000): Promise<number[]> {
  const wanted = new Set(pids);
  const survivors = (): number[] => [
    ...[...wanted].filter(pidAlive),
    ...serversInRange(range.from, range.to).map((p) => p.pid).filter((p) => !wanted.has(p)),
  ];
  const deadline = Date.now() + timeoutMs;
  let left = survivors();
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(50);
    left = survivors();
  }
  return left;
}

/** SIGKILLs the process groups of `pids` (teardown safety net). */
export function killGroups(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(-(readStat(pid)?.pgid ?? pid), 'SIGKILL');
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/**
 * Check that no model server is left (see survivingServers); survivors are SIGKILLed so
 * that the next file is not disturbed, and reported as a failure.
 */
export async function assertNoServersLeft(t: Test, pids: Iterable<number>, range: { from: number; to: number }, timeoutMs = 5_000): Promise<void> {
  const list = [...pids];
  const left = await survivingServers(list, range, timeoutMs);
  t.same(left.map((p) => `${p} ${cmdline(p)}`), [], `no model server left (checked ${list.length} pids and ports ${range.from}-${range.to})`);
  killGroups(left);
}

/** Teardown safety net: kill whatever model server is left, without asserting. */
export async function reapServers(pids: Iterable<number>, range: { from: number; to: number }): Promise<void> {
  killGroups(await survivingServers(pids, range, 0));
}

/** Collects every replica pid the admin API reports, for the teardown check. */
export class PidLog {
  readonly pids = new Set<number>();
  note(views: DeploymentView | DeploymentView[] | null | undefined): void {
    for (const d of views === null || views === undefined ? [] : Array.isArray(views) ? views : [views]) {
      for (const r of d.replicas ?? []) if (typeof r.pid === 'number') this.pids.add(r.pid);
    }
  }
}

// ---------------------------------------------------------------------------------------
// A stand-in model server for the `command` runtime

const SERVER = `
import http from 'node:http';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const [port, mode = 'ok', ...rest] = process.argv.slice(2);
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
console.log('server ' + process.pid + ' starting in mode ' + mode);
console.error('stderr hello from ' + process.pid);
if (mode === 'exit') {
  console.error('fatal: model weights not found at /nowhere/iris');
  process.exit(3);
}
if (mode === 'ignore-term') process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
if (mode === 'noisy') for (let i = 1; i <= 3000; i++) console.log('noise line ' + i);
if (mode === 'hang') {
  let i = 0;
  setInterval(() => console.log('loading weights ' + ++i + '%'), 100);
} else {
  // A forked worker in our process group, as uvicorn or gunicorn would have.
  if (mode === 'fork' || mode === 'ignore-term') spawn('sleep', ['1000'], { stdio: 'ignore' });
  // A helper in a session of its own (setsid), outside the server's process group.
  const helper = mode === 'setsid' ? spawn('sleep', ['1000'], { stdio: 'ignore', detached: true }) : null;
  const delay = mode === 'slow' ? Number(rest[0] ?? 1500) : 0;
  setTimeout(() => {
    const server = http.createServer((req, res) => {
      if (req.url.startsWith('/log/')) console.log('request ' + req.url);
      if (req.url === '/argv') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ argv: process.argv.slice(2), pid: process.pid, env: process.env.INJECT ?? null, helper: helper?.pid ?? null }));
        return;
      }
      res.writeHead(req.url === '/ping' || req.url === '/' || req.url.startsWith('/log/') ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, pid: process.pid, url: req.url }));
    });
    server.listen(Number(port), '127.0.0.1', () => {
      console.log('listening on ' + port);
      if (mode === 'crash') setTimeout(() => { console.error('fatal: CUDA error: device lost'); process.exit(1); }, 300);
    });
  }, delay);
}
`;

/** Writes the stand-in server script into `dir`; run it as `[node, script, '{port}', mode, ...]`. */
export function writeServerScript(dir: string): string {
  const file = join(dir, 'model-server.mjs');
  writeFileSync(file, SERVER);
  return file;
}

export function serverCommand(script: string, mode: string, ...extra: string[]): string[] {
  return [process.execPath, script, '{port}', mode, ...extra];
}

/**
 * A gateway with no deployments, for tests that deploy the stand-in server as `command`
 * replicas through the admin API. `gw` and `admin` are set before the first test; at the
 * end the gateway stops and every replica it reported (log them in `pids`) is reaped.
 */
export interface CommandFixture {
  gw: Gateway;
  admin: AdminClient;
  readonly pids: PidLog;
  /** The stand-in server script's path. */
  readonly script: string;
  /** A deployment spec running the stand-in server in `mode`. */
  command(model: string, mode: string, extra?: Record<string, unknown>, ...args: string[]): Record<string, unknown>;
}

export function commandFixture(t: Test, range: { from: number; to: number }, startTimeoutMs: number): CommandFixture {
  const script = writeServerScript(t.testdir());
  const fx = {
    pids: new PidLog(),
    script,
    command: (model: string, mode: string, extra: Record<string, unknown> = {}, ...args: string[]): Record<string, unknown> => ({
      model, version: '1', runtime: 'command', command: serverCommand(script, mode, ...args), readiness_path: '/ping', start_timeout_ms: startTimeoutMs, ...extra,
    }),
  } as CommandFixture;
  t.before(async () => {
    fx.gw = await startGateway({ ports: range }, {}, false);
    fx.admin = adminClient(fx.gw.adminUrl);
  });
  t.teardown(async () => {
    await fx.gw?.stop();
    await reapServers(fx.pids.pids, range);
  });
  return fx;
}

// ---------------------------------------------------------------------------------------
// Redis

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * A real redis-server on a free loopback port in a temp dir, no persistence. Give `port` to
 * start it again where a stopped one listened (clients reconnect to the same URL), and
 * `password` for one that refuses clients without it (its `url` carries it).
 */
/**
 * Instances sharing one Redis, for a file that owns `redisPort` and the ports it gives its
 * gateways (each gateway's admin API on the port after its own): the Redis starts with the
 * first gateway, and all of them stop with the file. `config`: what the gateways have beside
 * their ports, their Redis and a quiet log (no replica port range of their own: remote replicas).
 */
export function sharedRedisInstances(t: Test, redisPort: number, config: Record<string, unknown>): (port: number, env?: NodeJS.ProcessEnv) => Promise<Gateway> {
  let redis: RedisServer | undefined;
  const gateways: Gateway[] = [];
  t.teardown(async () => {
    for (const gw of gateways) await gw.stop();
    await redis?.stop();
  });
  return async (port, env = {}) => {
    redis ??= await startRedis(redisPort);
    const gw = await startGateway({
      listen: { host: '127.0.0.1', port },
      admin: { host: '127.0.0.1', port: port + 1 },
      ports: { from: redisPort, to: redisPort },
      log: { level: 'info', access: false },
      redis: { url: redis.url },
      ...config,
    }, env);
    gateways.push(gw);
    return gw;
  };
}

export async function startRedis(port?: number, options: { password?: string } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'));
  port ??= await freePort();
  const auth = options.password === undefined ? [] : ['--requirepass', options.password];
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', ...auth,
  ], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const out: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (s: string) => out.push(s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => out.push(s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => out.push(String(err)));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(() => out.join('').includes('Ready to accept connections') || child.exitCode !== null, 10_000, 'redis-server to start');
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${out.join('')}`);
  } catch (err) {
    await stop();
    throw err;
  }
  const userinfo = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
  return { port, url: `redis://${userinfo}127.0.0.1:${port}`, pid: child.pid!, stop };
}

/** One Redis command over a fresh connection (RESP); bulk replies as strings, arrays as arrays. */
export function redisCommand(port: number, ...args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    sock.setTimeout(5_000, () => sock.destroy(new Error('redis command timed out')));
    sock.once('error', reject);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseResp(buf, 0);
      if (parsed === null) return;
      sock.end();
      if (parsed.value instanceof Error) reject(parsed.value);
      else resolve(parsed.value);
    });
    sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
  });
}

function parseResp(buf: Buffer, at: number): { value: unknown; next: number } | null {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString('utf8', at + 1, eol);
  switch (type) {
    case '+': return { value: line, next: eol + 2 };
    case '-': return { value: new Error(line), next: eol + 2 };
    case ':': return { value: Number(line), next: eol + 2 };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, next: eol + 2 };
      if (buf.length < eol + 2 + n + 2) return null;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + n), next: eol + 2 + n + 2 };
    }
    case '*': {
      const n = Number(line);
      const out: unknown[] = [];
      let next = eol + 2;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, next);
        if (item === null) return null;
        out.push(item.value);
        next = item.next;
      }
      return { value: n < 0 ? null : out, next };
    }
    default: return { value: new Error(`unexpected RESP type ${type}`), next: buf.length };
  }
}
