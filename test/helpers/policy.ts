// Helpers for the data-plane policy tests (test/policy): a port nobody listens on, a
// listener whose connects hang, a server that resets connections, a bounded-concurrency
// runner, simulator tuning by port, the admin view of breakers, and the small request
// shapes these tests send again and again.

import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { httpRequest, metric, MissingMetricError, type MetricOptions, type Reply, type RequestOptions } from './http.js';
import { metricsText, sleep, type Gateway } from './procs.js';

/**
 * `port` (one of the test file's own, outside its gateways' allocation range, so that
 * nothing else binds it), checked to refuse connections: a replica that is down.
 */
export function refusingPort(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      reject(new Error(`something listens on 127.0.0.1:${port}; the test needs it closed`));
    });
    sock.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(port) : reject(err)));
  });
}

/** Runs `count` calls of `fn`, at most `concurrency` at a time; results in call order. */
export async function pool<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(count, concurrency) }, async () => {
    while (next < count) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

/** POST /_sim/config on the simulator listening on `port`. */
export async function simConfig(port: number, tunables: Record<string, unknown>): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${port}/_sim/config`, { method: 'POST', body: JSON.stringify(tunables), headers: { 'content-type': 'application/json' } });
  if (r.status !== 200) throw new Error(`sim ${port} config failed: ${r.status} ${await r.text()}`);
}

export async function simReset(port: number): Promise<void> {
  await fetch(`http://127.0.0.1:${port}/_sim/reset`, { method: 'POST' });
}

export interface PolicyReplicaView {
  id: string;
  port: number;
  state: string;
  breaker: string | null;
}

/** GET /v1/deployments/{id} from the admin API: its policies and replicas with breaker states. */
export async function deploymentView(gw: Gateway, id: string): Promise<{ id: string; policies: Record<string, any>; replicas: PolicyReplicaView[] }> {
  const r = await fetch(`${gw.adminUrl}/v1/deployments/${encodeURIComponent(id)}`);
  if (r.status !== 200) throw new Error(`GET /v1/deployments/${id}: ${r.status} ${await r.text()}`);
  return (await r.json()) as { id: string; policies: Record<string, any>; replicas: PolicyReplicaView[] };
}

/** One sample of a gateway metric (summed over labels not given); throws when the series is absent (see metric()). */
export async function gwMetric(gw: Gateway, name: string, labels: Record<string, string> = {}, opts: MetricOptions = {}): Promise<number> {
  return metric(await metricsText(gw), name, labels, opts);
}

/** A non-streamed Ollama generation: the request the simulator's `status` tunable applies to. */
export function generate(gw: Gateway, deployment: string, opts: RequestOptions = {}): Promise<Reply> {
  return httpRequest(`${gw.url}/${deployment}/api/generate`, {
    method: 'POST',
    body: '{"model":"demo","prompt":"hello there","stream":false}',
    ...opts,
    headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
  });
}

/** The parsed gateway error body, or null when the body is not `{"error":{...}}`. */
export function errorOf(r: Reply): { code: string; message: string; request_id: string } | null {
  try {
    const body = JSON.parse(r.body) as { error?: { code: string; message: string; request_id: string } };
    return body.error !== undefined && typeof body.error.code === 'string' ? body.error : null;
  } catch {
    return null;
  }
}

/** Counts of replies by status, e.g. `{200: 10, 429: 20}`. */
export function byStatus(replies: readonly Reply[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const r of replies) out[r.status] = (out[r.status] ?? 0) + 1;
  return out;
}

/** Polls the gateway's metrics until `pred` holds for the sample, or throws after `timeoutMs`. */
export async function waitMetric(gw: Gateway, name: string, labels: Record<string, string>, pred: (v: number) => boolean, timeoutMs = 5_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let v = NaN;
  for (;;) {
    try {
      v = await gwMetric(gw, name, labels);
      if (pred(v)) return v;
    } catch (err) {
      // Not there yet: keep polling (and say so if it never appears).
      if (!(err instanceof MissingMetricError)) throw err;
      v = NaN;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting on ${name}${JSON.stringify(labels)} (last value ${Number.isNaN(v) ? 'absent' : v})`);
    await sleep(20);
  }
}

/**
 * Keeps one slow request (`/_sim/sleep`) in flight on the replica served by `sim`, so that
 * least-outstanding-requests picks the other replica first. A hold that lands on another
 * replica is aborted (the gateway aborts its upstream at once) and sent again.
 * Returns a function that ends the hold.
 */
export async function holdReplica(gw: Gateway, deployment: string, sim: { stats(): Promise<{ active: number }> }, ms = 30_000): Promise<() => void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const before = (await sim.stats()).active;
    const req = request(`${gw.url}/${deployment}/_sim/sleep?ms=${ms}`, { agent: false });
    // Answered at once (e.g. a 502 from a failing replica with no retry): it did not land.
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      res.resume();
    });
    req.on('error', () => undefined);
    req.end();
    const deadline = Date.now() + 2_000;
    let landed = false;
    while (Date.now() < deadline && !answered) {
      await sleep(20);
      if ((await sim.stats()).active > before) {
        landed = true;
        break;
      }
    }
    if (landed) return () => req.destroy();
    req.destroy();
    await sleep(50);
  }
  throw new Error(`could not hold a request on the wanted replica of ${deployment}`);
}

export interface Listener {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A loopback address whose TCP connects hang: a listener that never accepts, with an accept
 * queue already full. On Linux a listen backlog of 1 queues two completed handshakes; once
 * the queue is full the kernel drops further SYNs (net.ipv4.tcp_abort_on_overflow = 0, the
 * default) and the client keeps retransmitting for about two minutes: a connect that hangs,
 * with no firewall rule and no unroutable address. A Node server in this process would
 * accept at once, so the listener is a child process whose event loop is blocked
 * (Atomics.wait) right after listen(): it never calls accept(), and exits after 2 minutes.
 * Checked before returning: throws when connects do not hang on this host.
 */
export async function hangingListener(): Promise<Listener> {
  const script = `
    const s = require('node:net').createServer();
    s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(s.address().port + '\\n');
      // Blocked for at most 2 minutes, so that a crashed test leaves nothing behind for long.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
      process.exit(0);
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const fillers: Socket[] = [];
  const close = async (): Promise<void> => {
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the hanging listener did not start')), 10_000);
      createInterface({ input: child.stdout! }).once('line', (l) => {
        clearTimeout(timer);
        resolve(Number(l));
      });
      child.once('exit', (code) => reject(new Error(`the hanging listener exited (${code})`)));
    });
    /** Connects; true once connected, false if still pending after `ms` (the socket is kept either way). */
    const tryConnect = (ms: number): Promise<boolean> => new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      fillers.push(s);
      const timer = setTimeout(() => resolve(false), ms);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(true);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`connect to the hanging listener failed instead of hanging: ${err.message}`));
      });
    });
    let queued = 0;
    while (await tryConnect(300)) {
      if (++queued > 16) throw new Error('the accept queue never filled: connects do not hang on this host');
    }
    // One more, to be sure: it must still be pending after a full second (the first SYN
    // retransmit) without an error.
    if (await tryConnect(1_200)) throw new Error('a connect to the full accept queue completed');
    return { port, url: `http://127.0.0.1:${port}`, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface ResettingServer extends Listener {
  /** Requests it received (and reset) so far. */
  readonly seen: number;
}

/**
 * A server that accepts connections and, as soon as request bytes arrive, resets the
 * connection (RST, no response byte): a replica that fails before answering.
 */
export async function resettingServer(): Promise<ResettingServer> {
  let seen = 0;
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.once('data', () => {
      seen++;
      sock.resetAndDestroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1' }, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get seen() {
      return seen;
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
