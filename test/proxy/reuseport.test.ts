// src/proxy/front-end/reuseport.ts and its addon native/reuseport.c: each worker thread its
// own SO_REUSEPORT listening socket on one port, handed to net.Server#listen({ fd }). Real
// worker threads share a port, both take connections, and one leaving does not cost the
// other a connection. Needs the addon built (bash scripts/build-native.sh).
// Ports 19150-19159 belong to this file.

import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import t from 'tap';
import { reusePortLoadError, reusePortSocket } from '../../src/proxy/front-end/reuseport.js';

t.setTimeout(30_000);

const SHARED_PORT = 19150;
const TAKEN_PORT = 19152;
const LOCALHOST_PORT = 19153;
const V6_LOOPBACK_PORT = 19154;
const V6_ANY_PORT = 19155;

const ADDON = fileURLToPath(new URL('../../native/build/reuseport.node', import.meta.url));

// Plain JS, eval'd: tap's TypeScript loader is not there to load a .ts worker. It loads the
// built addon in its own thread, as a data-plane worker does, listens on its own fd and
// answers every connection with its index.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const { index, addon, host, port } = workerData;
const fd = require(addon).bind(host, port);
const server = net.createServer((socket) => socket.end(String(index)));
server.on('error', (err) => parentPort.postMessage({ error: err.message }));
server.listen({ fd }, () => parentPort.postMessage({ listening: server.address() }));
parentPort.on('message', (m) => {
  if (m !== 'close') return;
  server.close((err) => {
    parentPort.postMessage({ closed: err ? err.message : true });
    parentPort.close();
  });
});
`;

interface FromWorker {
  readonly listening?: AddressInfo;
  readonly closed?: true | string;
  readonly error?: string;
}

/**
 * A worker's messages, queued from its start: a message emitted while nobody listens is
 * lost, and worker 1 may say it listens while the test still waits for worker 0.
 */
class Mailbox {
  private readonly queue: FromWorker[] = [];
  private waiting: { resolve: (m: FromWorker) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(readonly worker: Worker) {
    worker.on('message', (m: FromWorker) => {
      if (m.error !== undefined) this.fail(new Error(m.error));
      else if (this.waiting !== undefined) this.take().resolve(m);
      else this.queue.push(m);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`worker exited (${code}) before its next message`)));
  }

  /** The next message, failing on an error the worker reports or its exit. */
  next(): Promise<FromWorker> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  private take(): NonNullable<Mailbox['waiting']> {
    const w = this.waiting!;
    this.waiting = undefined;
    return w;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    if (this.waiting !== undefined) this.take().reject(err);
  }
}

/** One connection to host:port; resolves with what the server wrote before ending it. */
function ask(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

/** How many of `answers` each distinct answer is. */
function tally(answers: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) counts[a] = (counts[a] ?? 0) + 1;
  return counts;
}

/** A server answering 'main' on the fd; resolves once it listens. */
async function serveFd(fd: number): Promise<Server> {
  const server = createServer((socket) => socket.end('main'));
  server.listen({ fd });
  await once(server, 'listening');
  return server;
}

async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
}

t.test('the addon is built and loads', async (t) => {
  t.equal(reusePortLoadError(), null, 'no load error (bash scripts/build-native.sh builds it)');
});

t.test('two worker threads, each its own fd on one port: both accept; one leaves, the other takes every connection', async (t) => {
  const workers = [0, 1].map((index) => new Worker(WORKER_SOURCE, {
    eval: true, execArgv: [], workerData: { index, addon: ADDON, host: '127.0.0.1', port: SHARED_PORT },
  }));
  t.teardown(() => Promise.all(workers.map((w) => w.terminate())));
  const mail = workers.map((w) => new Mailbox(w));
  for (const [i, box] of mail.entries()) {
    const m = await box.next();
    t.same(m.listening, { address: '127.0.0.1', family: 'IPv4', port: SHARED_PORT }, `worker ${i} listens on 127.0.0.1:${SHARED_PORT}`);
  }

  const first = await Promise.all(Array.from({ length: 200 }, () => ask(SHARED_PORT)));
  const counts = tally(first);
  t.same(Object.keys(counts).sort(), ['0', '1'], `both workers answer (${JSON.stringify(counts)})`);
  t.equal(first.length, 200, 'all 200 connections answered');

  // Worker 1 closes its server (Node closes its fd) and, with nothing left to do, exits.
  const exited = once(workers[1]!, 'exit');
  workers[1]!.postMessage('close');
  t.same(await mail[1]!.next(), { closed: true }, 'worker 1 closed its server');
  t.same(await exited, [0], 'worker 1 exited 0');

  const after = await Promise.all(Array.from({ length: 50 }, () => ask(SHARED_PORT)));
  t.same(tally(after), { 0: 50 }, 'the 50 connections after it left are all answered, by worker 0');

  workers[0]!.postMessage('close');
  t.same(await mail[0]!.next(), { closed: true }, 'worker 0 closed its server');
  await t.rejects(ask(SHARED_PORT), { code: 'ECONNREFUSED' }, 'with both gone, nothing listens: their fds were closed');
});

t.test('a port held without SO_REUSEPORT: EADDRINUSE', async (t) => {
  const plain = createServer();
  plain.listen(TAKEN_PORT, '127.0.0.1');
  await once(plain, 'listening');
  t.teardown(() => closeServer(plain));
  t.throws(() => reusePortSocket('127.0.0.1', TAKEN_PORT), {
    code: 'EADDRINUSE', message: `bind 127.0.0.1:${TAKEN_PORT}: Address already in use`,
  });
});

t.test('hosts: localhost is 127.0.0.1, names are refused; ports out of range are refused', async (t) => {
  t.throws(() => reusePortSocket('example.com', LOCALHOST_PORT), {
    message: /^listen\.host must be an IP address for the node front end/,
  }, 'a non-numeric host');
  t.throws(() => reusePortSocket('127.0.0.1', 65536), { code: 'EINVAL', name: 'RangeError' }, 'port 65536');
  t.throws(() => reusePortSocket('127.0.0.1', 1.5), { code: 'EINVAL', name: 'RangeError' }, 'port 1.5');

  const server = await serveFd(reusePortSocket('localhost', LOCALHOST_PORT));
  t.teardown(() => closeServer(server));
  t.same(server.address(), { address: '127.0.0.1', family: 'IPv4', port: LOCALHOST_PORT }, 'localhost binds 127.0.0.1');
  t.equal(await ask(LOCALHOST_PORT), 'main', 'and answers');
});

// Skipped only when the machine has no IPv6 loopback: plain net cannot bind ::1 either.
const noIpv6 = await new Promise<string | false>((resolve) => {
  const probe = createServer();
  probe.once('error', (err) => resolve(`no IPv6 here: plain net cannot bind ::1 (${err.message})`));
  probe.listen(V6_LOOPBACK_PORT, '::1', () => probe.close(() => resolve(false)));
});

t.test('IPv6: ::1 shared by two sockets; :: is dual-stack', { skip: noIpv6 }, async (t) => {
  const servers = [
    await serveFd(reusePortSocket('::1', V6_LOOPBACK_PORT)),
    await serveFd(reusePortSocket('::1', V6_LOOPBACK_PORT)),
  ];
  t.teardown(() => Promise.all(servers.map(closeServer)));
  t.same(servers[1]!.address(), { address: '::1', family: 'IPv6', port: V6_LOOPBACK_PORT }, 'the second socket binds ::1 too');
  const answers = await Promise.all(Array.from({ length: 20 }, () => ask(V6_LOOPBACK_PORT, '::1')));
  t.same(tally(answers), { main: 20 }, 'connections to [::1] are answered');

  const any = await serveFd(reusePortSocket('::', V6_ANY_PORT));
  servers.push(any);
  t.equal(await ask(V6_ANY_PORT, '127.0.0.1'), 'main', ':: takes an IPv4 connection (IPV6_V6ONLY off)');
  t.equal(await ask(V6_ANY_PORT, '::1'), 'main', 'and an IPv6 one');
});
