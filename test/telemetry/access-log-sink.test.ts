// Where the access log goes (src/telemetry/line-writer.ts): each data-plane worker buffers
// its own access lines and writes them to fd 1 in batches. A graceful stop writes every
// buffered line before the process exits; a sink that stalls (a pipe nobody reads) costs
// lines, dropped and counted, never memory nor the latency of the data plane, and the
// writer recovers once the sink reads again; log.access_sample keeps only a share of the
// successful requests, and every failure.
//
// The gateway is spawned here rather than with startGateway: these tests need to choose
// what its stdout is (a file, a pipe nobody reads), which startGateway always consumes.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t, { type Test } from 'tap';
import { Pool } from 'undici';
import { freePort } from '../fixtures/free-port.js';
import { metric } from '../helpers/http.js';
import { CLI, eventually, rssBytes } from '../helpers/procs.js';

// Replica ports 18820-18829 belong to this file (its deployments are remote: none is used).
const PORTS = { from: 18820, to: 18829 };
/** Log lines besides the access lines that a gateway of these tests writes, at most (start-up, stop, warnings). */
const OTHER_LINES = 60;
const MiB = 1024 * 1024;

// The model server: answers every request at once with a small JSON body.
let upstream: Server;
let upstreamUrl: string;
// A port nobody listens on: its deployment's requests fail with a 502.
let deadUrl: string;
const launched: Gateway[] = [];
const dirs: string[] = [];

t.before(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  upstream.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
  deadUrl = `http://127.0.0.1:${await freePort()}`;
});

t.teardown(async () => {
  for (const gw of launched) if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  upstream?.closeAllConnections();
  await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Gateway {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly adminUrl: string;
  readonly dir: string;
  readonly stderr: string[];
  readonly exited: Promise<Exit>;
  /** SIGTERM, then the exit (SIGKILL after `timeoutMs`, reported as such). */
  stop(timeoutMs?: number): Promise<Exit & { ms: number; killed: boolean }>;
}

function tmpDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-access-sink-'));
  dirs.push(dir);
  return dir;
}

const remote = (model: string, url: string): Record<string, unknown> => ({ model, version: '1', runtime: 'remote', urls: [url], health_check: { enabled: false } });

/**
 * Starts `sluice serve` with two workers and `log` over the access-log defaults; its
 * stdout is `stdoutFile` (appended to) or, without one, a pipe this file reads or not.
 */
async function launch(opts: { log: Record<string, unknown>; deployments: unknown[]; stdoutFile?: string; shutdown?: Record<string, unknown> }): Promise<Gateway> {
  const dir = tmpDir();
  const port = await freePort();
  const adminPort = await freePort();
  const config = {
    listen: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: adminPort },
    workers: 2,
    state_dir: join(dir, 'state'),
    ports: PORTS,
    shutdown: { drain_delay_ms: 0, ...opts.shutdown },
    log: { level: 'info', access: true, ...opts.log },
    deployments: opts.deployments,
  };
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  let fd: number | null = null;
  if (opts.stdoutFile !== undefined) fd = openSync(opts.stdoutFile, 'a');
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], { stdio: ['ignore', fd ?? 'pipe', 'pipe'] });
  if (fd !== null) closeSync(fd);
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const gw: Gateway = {
    child,
    pid: child.pid!,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    dir,
    stderr,
    exited,
    async stop(timeoutMs = 15_000) {
      const started = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      const exit = await exited;
      clearTimeout(timer);
      return { ...exit, ms: Date.now() - started, killed };
    },
  };
  launched.push(gw);
  // Ready: the admin API lists every replica ready and the data plane's /readyz says so
  // (neither is an access-logged request).
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}): ${stderr.join('\n')}`);
    try {
      const body = (await (await fetch(`${gw.adminUrl}/v1/deployments`, { signal: AbortSignal.timeout(2000) })).json()) as { deployments: Array<{ replicas: Array<{ state: string }> }> };
      if (!body.deployments.every((d) => d.replicas.length > 0 && d.replicas.every((r) => r.state === 'ready'))) return undefined;
      return (await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  }, 60_000, 'the gateway to be ready');
  return gw;
}

interface LoadResult {
  /** Per status, how many answers. */
  statuses: Record<string, number>;
  /** The x-request-id of every answer, in completion order. */
  ids: string[];
  /** Milliseconds from sending to the end of the body, per answer. */
  latencies: number[];
  errors: string[];
  sent: number;
  ms: number;
}

/**
 * `n` GETs of `path`, `concurrency` at a time on as many keep-alive connections; stops
 * sending after `deadlineMs` (and no request waits more than 10 s for its answer).
 */
async function load(url: string, path: string, n: number, concurrency: number, deadlineMs: number, idPrefix?: string): Promise<LoadResult> {
  const pool = new Pool(url, { connections: concurrency, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000, keepAliveTimeout: 60_000 });
  const result: LoadResult = { statuses: {}, ids: [], latencies: [], errors: [], sent: 0, ms: 0 };
  const started = performance.now();
  const deadline = Date.now() + deadlineMs;
  const loop = async (): Promise<void> => {
    while (result.sent < n && Date.now() < deadline) {
      const i = result.sent++;
      const t0 = performance.now();
      try {
        const r = await pool.request({ path, method: 'GET', headers: idPrefix === undefined ? {} : { 'x-request-id': `${idPrefix}${i}` } });
        await r.body.text();
        result.latencies.push(performance.now() - t0);
        result.statuses[r.statusCode] = (result.statuses[r.statusCode] ?? 0) + 1;
        result.ids.push(r.headers['x-request-id'] as string);
      } catch (err) {
        result.errors.push(String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  result.ms = performance.now() - started;
  await pool.destroy();
  return result;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** Complete lines (a trailing partial line is left out) of `text`. */
function completeLines(text: string): string[] {
  const lines = text.split('\n');
  lines.pop();
  return lines.filter((l) => l !== '');
}

/** Parses every line; those that are not JSON are returned apart. */
function parseLines(lines: string[]): { records: Array<Record<string, unknown>>; bad: string[] } {
  const records: Array<Record<string, unknown>> = [];
  const bad: string[] = [];
  for (const line of lines) {
    try {
      records.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      bad.push(line);
    }
  }
  return { records, bad };
}

/** The fields of an access line, in order: pino's shape (level, time, pid, bindings, msg last). */
const ACCESS_KEYS = [
  'level', 'time', 'pid', 'worker', 'name', 'request_id', 'method', 'path', 'client', 'route', 'upstream', 'status',
  'duration_ms', 'ttfb_ms', 'upstream_request_id', 'request_bytes', 'response_bytes', 'cache', 'key_label', 'error', 'cost_usd', 'msg',
];

/** Whether a parsed line has an access line's fields, in order (a torn line may still parse). */
function wellFormed(l: Record<string, unknown>): boolean {
  const keys = Object.keys(l);
  return keys.length === ACCESS_KEYS.length && keys.every((k, i) => k === ACCESS_KEYS[i]) && typeof l.worker === 'number' && typeof l.request_id === 'string' &&
    l.level === 'info' && !Number.isNaN(Date.parse(l.time as string)) && l.name === 'sluice';
}

/** Lines of `text` that are not JSON, or are access lines of the wrong shape: torn. */
function tornLines(text: string): string[] {
  const { records, bad } = parseLines(completeLines(text));
  return [...bad, ...records.filter((l) => l.msg === 'request' && !wellFormed(l)).map((l) => JSON.stringify(l))];
}

async function accessCounts(gw: Gateway): Promise<{ lines: number; dropped: number }> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  return { lines: metric(text, 'sluice_log_lines_total'), dropped: metric(text, 'sluice_log_dropped_total') };
}

function countBy<T>(items: T[], key: (item: T) => unknown): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) {
    const k = String(key(item));
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

// 1. A graceful stop writes every line still buffered.

const N = 3000;
const ALL_BUFFERED = { access_buffer_bytes: 16 * MiB, access_max_buffer_bytes: 16 * MiB, access_flush_ms: 0 };

t.test('graceful stop keeps every line (default 64 KiB buffer, flush every 1 s; stdout a file)', (t) => stopToFile(t, {}, false));

t.test('graceful stop keeps every line (16 MiB buffer, no timed flush: all written by the stop; stdout a file)', (t) =>
  stopToFile(t, ALL_BUFFERED, true));

async function stopToFile(t: Test, log: Record<string, unknown>, nothingWrittenBefore: boolean): Promise<void> {
  const out = join(tmpDir(), 'stdout.log');
  const gw = await launch({ log, stdoutFile: out, deployments: [remote('echo', upstreamUrl)] });
  const r = await load(gw.url, '/echo-1/v1/anything', N, 32, 60_000);
  t.same(r.errors, [], 'no request failed');
  t.same(r.statuses, { 200: N }, `all ${N} requests answered 200`);
  // What the workers had written when the stop began: not everything.
  const before = parseLines(completeLines(readFileSync(out, 'utf8'))).records.filter((l) => l.msg === 'request').length;
  const exit = await gw.stop();
  t.same({ code: exit.code, signal: exit.signal, killed: exit.killed }, { code: 0, signal: null, killed: false }, `exit code 0 on SIGTERM (after ${exit.ms} ms)`);
  // Nothing is in flight: the stop is the flush, not a grace period (10 s) running out.
  t.ok(exit.ms < 5_000, `stopped within 5 s (${exit.ms} ms)`);
  if (nothingWrittenBefore) t.equal(before, 0, 'no access line was written before the stop (all were buffered)');
  else t.ok(before < N, `only ${before} of ${N} lines were written before the stop: the rest were buffered`);

  const text = readFileSync(out, 'utf8');
  t.ok(text.endsWith('\n'), 'the output ends with a whole line');
  const { records, bad } = parseLines(completeLines(text));
  t.same(bad.slice(0, 3), [], 'every line of stdout is JSON');
  const lines = records.filter((l) => l.msg === 'request');
  t.equal(lines.length, N, `exactly ${N} access lines after the stop (${before} before it)`);
  t.same(lines.filter((l) => !wellFormed(l)).slice(0, 3), [], 'each with the fields pino printed, in its order');
  t.same(countBy(lines, (l) => `${l.route} ${l.status} ${l.method}`), { 'echo-1 200 GET': N }, 'each for a 200 of the deployment');
  const logged = lines.map((l) => l.request_id as string);
  t.equal(new Set(logged).size, N, 'request ids are distinct');
  t.same([...logged].sort(), [...r.ids].sort(), 'the request ids logged are the x-request-id headers the client got');
  // Both workers served (32 connections hashed over two listen sockets) and both flushed.
  const perWorker = countBy(lines, (l) => l.worker);
  t.same(Object.keys(perWorker).sort(), ['0', '1'], `both workers logged: ${JSON.stringify(perWorker)}`);
  t.same(gw.stderr, [], 'nothing on stderr');
}

// With a file, a write the worker handed to the thread pool lands even if the thread exits
// without waiting for it. A pipe whose reader is not reading takes such a write only in
// part (fd 1 is non-blocking: the rest fails with EAGAIN and is retried): here the stop must
// wait for it. Each worker has ~2 MiB of lines waiting, far more than the socket holds, so
// both workers' last writes are pending at once until the reader reads again.
const SLOW_N = 10_000;
/** How long the slow sink does not read once the stop has begun. */
const SLOW_SINK_MS = 1500;

t.test('graceful stop waits for a pipe that is not read for 1.5 s: no line lost, none torn', async (t) => {
  const gw = await launch({ log: ALL_BUFFERED, deployments: [remote('echo', upstreamUrl)] });
  const stdout = gw.child.stdout!;
  let text = '';
  stdout.setEncoding('utf8');
  stdout.on('data', (chunk: string) => {
    text += chunk;
  });
  const r = await load(gw.url, '/echo-1/v1/anything', SLOW_N, 32, 60_000);
  t.same(r.errors, [], 'no request failed');
  t.same(r.statuses, { 200: SLOW_N }, `all ${SLOW_N} requests answered 200`);
  t.notOk(text.includes('"msg":"request"'), 'no access line was written before the stop (all were buffered)');
  stdout.pause();
  let resumedAt = 0;
  setTimeout(() => {
    resumedAt = Date.now();
    stdout.resume();
  }, SLOW_SINK_MS);
  const exit = await gw.stop();
  t.same({ code: exit.code, signal: exit.signal, killed: exit.killed }, { code: 0, signal: null, killed: false }, `exit code 0 on SIGTERM (after ${exit.ms} ms)`);
  t.ok(resumedAt > 0, 'the gateway waited for the sink to read again before it exited');
  t.ok(exit.ms < SLOW_SINK_MS + 5_000, `stopped within ${SLOW_SINK_MS + 5_000} ms (${exit.ms} ms)`);
  await new Promise<void>((res) => (stdout.readableEnded ? res() : stdout.once('end', () => res())));

  t.ok(text.endsWith('\n'), 'the output ends with a whole line');
  const torn = tornLines(text);
  // Lost lines, counted apart from torn ones (asserted below): a request id is found in the
  // text unless the line was lost, or a tear went through the id (at most two per tear).
  const found = countBy([...text.matchAll(/"request_id":"([^"]*)"/g)], (m) => m[1]);
  const missing = r.ids.filter((id) => found[id] === undefined);
  t.ok(missing.length <= 2 * torn.length, `every request id is on stdout (${missing.length} missing, ${torn.length} torn lines)`);
  t.same(Object.entries(found).filter(([, n]) => n > 1).slice(0, 3), [], 'no line written twice');
  const perWorker = countBy(r.ids.filter((id) => found[id] !== undefined), (id) => id.split('-')[0]);
  t.equal(Object.keys(perWorker).length, 2, `both workers had lines to write (request ids by worker prefix: ${JSON.stringify(perWorker)})`);
  // Two threads writing large buffers to one pipe: the kernel takes each in pieces (partial
  // writes), and a piece of one can land in the middle of a line of the other (which may
  // even still parse, as a line that lost fields).
  t.same(torn.slice(0, 2), [], `no line torn (${torn.length} torn)`);
  const lines = parseLines(completeLines(text)).records.filter((l) => l.msg === 'request' && wellFormed(l));
  t.equal(lines.length, SLOW_N, `exactly ${SLOW_N} access lines`);
  t.same(gw.stderr, [], 'nothing on stderr');
});

// 2. A sink that stops reading.

t.test('a stalled sink stays bounded, never blocks the data plane, and recovers', async (t) => {
  const MAX_BUFFER = 65_536;
  const gw = await launch({ log: { access_buffer_bytes: 4096, access_max_buffer_bytes: MAX_BUFFER }, deployments: [remote('echo', upstreamUrl)] });
  // Nobody reads stdout from here on: once the socket's buffer is full, writes to it fail
  // with EAGAIN (fd 1 is non-blocking) and are retried.
  const stdout = gw.child.stdout!;
  stdout.pause();

  const warm = await load(gw.url, '/echo-1/v1/warm', 200, 8, 20_000);
  t.same(warm.statuses, { 200: 200 }, 'warm-up answered');
  const baseline = rssBytes(gw.pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(gw.pid));
    } catch {
      // exited: the assertions below say so
    }
  }, 50);
  const LOAD = 20_000;
  const r = await load(gw.url, '/echo-1/v1/stalled', LOAD, 64, 20_000, 'stalled-');
  clearInterval(sampler);
  peak = Math.max(peak, rssBytes(gw.pid));
  const p99 = percentile(r.latencies, 99);
  const max = percentile(r.latencies, 100);
  t.comment(`stalled load: ${r.sent} requests in ${Math.round(r.ms)} ms, p50 ${percentile(r.latencies, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms; RSS ${(baseline / MiB).toFixed(0)} -> peak ${(peak / MiB).toFixed(0)} MiB`);
  t.same(r.errors.slice(0, 3), [], 'no request failed');
  t.equal(r.sent, LOAD, `all ${LOAD} requests were sent within 20 s`);
  t.same(r.statuses, { 200: LOAD }, 'every request answered 200 while the sink was stalled');
  t.ok(p99 < 1000, `p99 latency ${p99.toFixed(1)} ms < 1 s`);
  t.ok(max < 2000, `max latency ${max.toFixed(1)} ms < 2 s`);
  t.ok(peak - baseline < 150 * MiB, `RSS grew by ${((peak - baseline) / MiB).toFixed(1)} MiB (< 150 MiB)`);
  t.ok(peak < 400 * MiB, `peak RSS ${(peak / MiB).toFixed(0)} MiB < 400 MiB`);

  // The admin API answers meanwhile, and counts what was dropped.
  let stalled: { lines: number; dropped: number } | null = null;
  try {
    stalled = await accessCounts(gw);
  } catch (err) {
    t.fail(`GET /metrics did not answer while stdout was stalled: ${String(err)}`);
  }
  t.ok(stalled !== null && stalled.dropped > 0, `sluice_log_dropped_total ${stalled?.dropped} > 0 while stalled`);
  // The counters are of every log line: the access lines, and the few others (start-up, warnings).
  t.ok(stalled !== null && stalled.lines + stalled.dropped <= 200 + LOAD + OTHER_LINES, `lines ${stalled?.lines} + dropped ${stalled?.dropped} <= requests ${200 + LOAD} + ${OTHER_LINES} others at most`);

  // Read again: what waited goes out, new lines too.
  let text = '';
  stdout.setEncoding('utf8');
  stdout.on('data', (chunk: string) => {
    text += chunk;
  });
  stdout.resume();
  // Every request was either written or counted as dropped, none lost silently.
  const settled = await eventually(async () => {
    const c = await accessCounts(gw);
    return c.lines + c.dropped >= 200 + LOAD ? c : undefined;
  }, 10_000, 'every line of the stalled load to be written or counted as dropped');
  t.ok(settled.dropped >= stalled!.dropped, `dropped ${settled.dropped} once the sink reads again`);

  const after = await load(gw.url, '/echo-1/v1/after', 50, 4, 10_000, 'after-');
  t.same(after.statuses, { 200: 50 }, 'requests after the stall answer');
  await eventually(() => (after.ids.every((id) => text.includes(`"request_id":"${id}"`)) ? true : undefined), 5_000, 'the access lines of the requests sent after the stall');
  t.pass('the lines of the requests sent after the stall arrived: the writer recovered');
  const final = await accessCounts(gw);
  const extra = final.lines + final.dropped - (200 + LOAD + 50);
  t.ok(extra >= 0 && extra <= OTHER_LINES, `lines ${final.lines} + dropped ${final.dropped} = every request, and ${extra} other lines`);
  t.equal(final.dropped, settled.dropped, 'nothing dropped once the sink reads again');
  // The workers say so in the log (at most every 10 s).
  await eventually(() => (text.includes('"msg":"stdout is slower than the traffic: log lines dropped"') ? true : undefined), 12_000, 'the dropped-lines warning');
  t.pass('the workers warned that lines were dropped');

  const exit = await gw.stop();
  t.same({ code: exit.code, signal: exit.signal, killed: exit.killed }, { code: 0, signal: null, killed: false }, `exit code 0 on SIGTERM (after ${exit.ms} ms)`);
  t.ok(exit.ms < 15_000, 'stopped within 15 s');
  await new Promise<void>((r) => (stdout.readableEnded ? r() : stdout.once('end', () => r())));

  // Counted by request id in the text: two workers' writes to one pipe can tear a line
  // (asserted by the slow-pipe stop test), at most two ids per torn line.
  const { records } = parseLines(completeLines(text));
  const torn = tornLines(text);
  const found = countBy([...text.matchAll(/"request_id":"([^"]*)"/g)], (m) => m[1]);
  const ids = Object.keys(found);
  t.comment(`${torn.length} torn lines on stdout`);
  // final.lines counts the other lines written before it was read too (the stop's come after).
  t.ok(ids.length <= final.lines + 2 * torn.length && final.lines - ids.length <= OTHER_LINES + 2 * torn.length, `stdout holds every access line counted as written (${ids.length} ids, ${final.lines} lines written)`);
  t.same(Object.entries(found).filter(([, n]) => n > 1).slice(0, 3), [], 'no line written twice');
  const stalledWritten = ids.filter((id) => id.startsWith('stalled-')).length;
  t.ok(Math.abs(stalledWritten + final.dropped - LOAD) <= 2 * torn.length, `each request of the stalled load was written (${stalledWritten}) or dropped (${final.dropped})`);
  // What the stalled load left on stdout is at most what the socket, the reader's buffer
  // and the workers' capped buffers (the one waiting and the one being written) held, not
  // the ~20 000 lines it produced.
  const access = records.filter((l) => l.msg === 'request' && wellFormed(l));
  const lineBytes = access.reduce((n, l) => n + JSON.stringify(l).length + 1, 0) / Math.max(1, access.length);
  const stalledBytes = stalledWritten * lineBytes;
  let socketBytes = 212_992;
  try {
    socketBytes = Number(readFileSync('/proc/sys/net/core/wmem_default', 'utf8').trim()) || socketBytes;
  } catch {
    // not Linux: the usual default
  }
  const bound = socketBytes + 128 * 1024 + 2 * 2 * MAX_BUFFER + 64 * 1024;
  // What waited in the workers' memory during the stall is what was written once the sink
  // read again: per worker, at most the cap waiting and one capped buffer being written.
  const held = settled.lines - stalled!.lines;
  const heldBytes = held * lineBytes;
  t.ok(heldBytes <= 2 * 2 * MAX_BUFFER + 2 * 1024, `the workers held ${held} lines (~${(heldBytes / 1024).toFixed(0)} KiB) during the stall, within the cap (2 workers x 2 x ${MAX_BUFFER / 1024} KiB)`);
  t.comment(`stalled load: ${stalledWritten} of ${LOAD} lines (~${(stalledBytes / 1024).toFixed(0)} KiB) written, ${final.dropped} dropped; bound ${(bound / 1024).toFixed(0)} KiB`);
  t.ok(stalledBytes <= bound, `the stalled load's lines on stdout (~${(stalledBytes / 1024).toFixed(0)} KiB) fit in the socket, the reader's buffer and the capped buffers (${(bound / 1024).toFixed(0)} KiB)`);
  t.same(gw.stderr, [], 'nothing on stderr');
});

// A sink that never reads again must not hold a stop for ever either: the workers give
// their last lines up to the grace period and a second (LineWriter.close), and the process
// must still exit. (The main thread's own log lines go to the same fd.)
t.test('SIGTERM while the sink is stalled: the stop is bounded', async (t) => {
  const GRACE_MS = 1000;
  const gw = await launch({ log: { access_buffer_bytes: 4096, access_max_buffer_bytes: 65_536 }, shutdown: { grace_ms: GRACE_MS }, deployments: [remote('echo', upstreamUrl)] });
  const stdout = gw.child.stdout!;
  stdout.pause();
  const r = await load(gw.url, '/echo-1/v1/stalled', 5000, 32, 20_000);
  t.same(r.statuses, { 200: 5000 }, 'every request answered 200 while the sink was stalled');
  const counts = await accessCounts(gw);
  t.ok(counts.dropped > 0, `the sink is stalled: ${counts.dropped} lines dropped`);
  // grace + LOG_CLOSE_EXTRA_MS (1 s) + the data plane's own margin (2 s), and slack.
  const bound = GRACE_MS + 1000 + 2000 + 4000;
  const exit = await gw.stop(bound);
  t.notOk(exit.killed, `the gateway exited by itself within ${bound} ms of SIGTERM (${exit.killed ? 'killed' : `${exit.ms} ms`})`);
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'exit code 0');
  t.same(gw.stderr, [], 'nothing on stderr');
});

// 3. Sampling.

async function sampled(t: Test, sample: number, ok: number): Promise<Array<Record<string, unknown>>> {
  const gw = await launch({ log: { access_sample: sample }, deployments: [remote('ok', upstreamUrl), remote('dead', deadUrl)] });
  const lines: string[] = [];
  createInterface({ input: gw.child.stdout! }).on('line', (l) => lines.push(l));
  const r = await load(gw.url, '/ok-1/v1/anything', ok, 16, 30_000, 'ok-');
  t.same(r.statuses, { 200: ok }, `${ok} requests answered 200`);
  const missing = await fetch(`${gw.url}/nope-1/v1/anything`, { headers: { 'x-request-id': 'sample-404' } });
  await missing.text();
  t.equal(missing.status, 404, 'an unknown deployment: 404 from the gateway');
  const dead = await fetch(`${gw.url}/dead-1/v1/anything`, { headers: { 'x-request-id': 'sample-502' } });
  await dead.text();
  t.equal(dead.status, 502, 'a dead upstream: 502');
  const exit = await gw.stop();
  t.same({ code: exit.code, signal: exit.signal, killed: exit.killed }, { code: 0, signal: null, killed: false }, `exit code 0 on SIGTERM (after ${exit.ms} ms)`);
  await new Promise<void>((res) => (gw.child.stdout!.readableEnded ? res() : gw.child.stdout!.once('end', () => res())));
  const { records, bad } = parseLines(lines);
  t.same(bad, [], 'every line of stdout is JSON');
  const access = records.filter((l) => l.msg === 'request');
  t.match(access.find((l) => l.request_id === 'sample-404'), { status: 404, route: null, upstream: null, error: 'SLUICE_ERR_NO_ROUTE' }, 'the route miss (a 4xx the gateway answers itself) is logged');
  t.match(access.find((l) => l.request_id === 'sample-502'), { status: 502, route: 'dead-1', error: 'SLUICE_ERR_UPSTREAM_CONNECT' }, 'the failed request is logged');
  t.equal(access.filter((l) => l.request_id === 'sample-404' || l.request_id === 'sample-502').length, 2, 'once each');
  return access.filter((l) => l.route === 'ok-1');
}

t.test('access_sample 0: no line for a 200, one for every failure', async (t) => {
  const ok = await sampled(t, 0, 200);
  t.same(ok, [], 'no line for any of the 200s');
});

t.test('access_sample 0.25: about a quarter of the 200s get a line', async (t) => {
  const ok = await sampled(t, 0.25, 2000);
  t.ok(ok.every((l) => l.status === 200 && String(l.request_id).startsWith('ok-')), 'lines of the 200s');
  t.equal(new Set(ok.map((l) => l.request_id)).size, ok.length, 'one line per request');
  // Binomial(2000, 0.25): mean 500, standard deviation 19.4; 350..650 is beyond 7 of them.
  t.ok(ok.length >= 350 && ok.length <= 650, `${ok.length} of 2000 200s logged (expected about 500)`);
});
