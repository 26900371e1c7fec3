// Coalesced requests go at the pace of their fastest member: a client that stops reading
// neither stalls the identical requests sharing its upstream call (it is cut once 8 MiB
// behind, a leader detached) nor makes the gateway hold the whole answer for it; a request
// alone keeps plain backpressure (paused while its client is slow, never cut).

import t from 'tap';
import { connect, type Socket } from 'node:net';
import { gwMetric } from '../helpers/policy.js';
import { rssBytes, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// This file's gateway allocates its simulator's ports from 19280-19284.
let gw: Gateway;
const DEPLOYMENT = 'big-1';
const PATH = `/${DEPLOYMENT}/v1/chat/completions`;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 19280, to: 19284 },
    log: { level: 'info', access: false },
    deployments: [
      {
        model: 'big', version: '1', runtime: 'sim', args: ['--tokens', '200000', '--token-ms', '0', '--ttft-ms', '0'],
        // The whole ~41 MB stream is recorded: a late joiner can always join (the default,
        // 4 MiB, would make the test depend on how much the kernel's buffers took first).
        policies: { cache: { max_entry_bytes: 64 * 1024 * 1024, max_bytes: 256 * 1024 * 1024 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

const bodyOf = (prompt: string): string => JSON.stringify({ model: 'big', stream: true, temperature: 0, messages: [{ role: 'user', content: prompt }] });

interface Read {
  status: number;
  bytes: number;
  /** The stream's last event was `data: [DONE]` and the response ended properly. */
  whole: boolean;
  cache: string;
}

/**
 * A client that reads its whole streamed answer as fast as it comes: a raw connection that
 * counts bytes (an HTTP client's per-chunk events would make the test process, which reads
 * every member, the slowest member).
 */
function readAll(body: string, onFirstBytes?: () => void): Promise<Read> {
  return new Promise((resolve, reject) => {
    const socket = connect(gw.port, '127.0.0.1', () => {
      socket.write(requestText(body));
    });
    let head = '';
    let bytes = 0;
    let tail: Buffer = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      if (bytes === 0) onFirstBytes?.();
      if (head.length < 2048) head += c.toString('latin1', 0, Math.min(c.length, 2048));
      bytes += c.length;
      tail = c.length >= 64 ? c.subarray(c.length - 64) : Buffer.concat([tail, c]).subarray(-64);
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const t = tail.toString('latin1');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0),
        bytes,
        // The last event, then the chunked body's last chunk: the stream ended whole.
        whole: t.includes('data: [DONE]') && t.endsWith('0\r\n\r\n'),
        cache: /\r\nx-sluice-cache: (\w+)/i.exec(head)?.[1] ?? '',
      });
    });
  });
}

function requestText(body: string): string {
  return `POST ${PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** A raw connection that sends the request and reads nothing until told to. */
interface Idle {
  socket: Socket;
  /** Starts reading: resolves with every byte received once the connection ends. */
  drain(): Promise<string>;
}

function idleClient(body: string): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const socket = connect(gw.port, '127.0.0.1', () => {
      socket.write(requestText(body));
      resolve({
        socket,
        drain: () => new Promise((done) => {
          const parts: Buffer[] = [];
          socket.on('data', (c: Buffer) => parts.push(c));
          socket.on('close', () => done(Buffer.concat(parts).toString('latin1')));
          socket.resume();
          // A connection the gateway still holds open ends when it has sent everything.
          setTimeout(() => socket.destroy(), 15_000).unref();
        }),
      });
    });
    // No 'data' listener: the socket reads nothing past its small internal buffer.
    socket.on('error', () => {});
    socket.once('error', reject);
  });
}

/** `p`, or a rejection after `ms`: a stalled flight fails the test instead of hanging it. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Members cut so far; `before`: a count to compare with later (0 when the series is not there). */
const cuts = (before = false): Promise<number> => gwMetric(gw, 'sluice_coalesced_cut_total', { deployment: DEPLOYMENT }, before ? { absent: 0 } : {});

t.test('a leader whose client stops reading does not stall the identical requests: it is cut, and they finish', async (t) => {
  const body = bodyOf('idle leader');
  const before = await cuts(true);
  const idle = await idleClient(body);
  // The idle client leads the flight (its request is in); its buffers soon fill.
  await sleep(100);
  const started = Date.now();
  // Two joiners: more, read by this one process, can fall 8 MiB behind each other under a
  // loaded CI machine and be cut for it (the bound the next test checks), which this test is not about.
  const reads = await within(Promise.all([readAll(body), readAll(body)]), 20_000, 'the joiners of an idle leader');
  const took = Date.now() - started;
  for (const r of reads) {
    t.equal(r.status, 200);
    t.equal(r.cache, 'coalesced', 'joined the flight, not a cache hit');
    t.ok(r.whole, `a joiner got the whole stream (${r.bytes} bytes)`);
  }
  t.ok(reads[0]!.bytes > 30 * 1024 * 1024, 'the stream is large (the idle leader could not have buffered it all)');
  t.ok(took < 15_000, `the joiners finished promptly (${took} ms)`);
  t.equal(await cuts() - before, 1, 'the idle leader was cut, and only it');
  const got = await idle.drain();
  t.ok(got.startsWith('HTTP/1.1 200'), 'the idle leader had its head');
  t.notOk(got.includes('data: [DONE]'), 'its stream was cut, not ended');
  t.ok(got.length < reads[0]!.bytes, `it got part of the stream only (${got.length} bytes)`);
});

t.test('a joiner that never reads is cut once past the bound; the others get the whole stream', async (t) => {
  const body = bodyOf('idle joiner');
  const before = await cuts(true);
  let idle: Idle | null = null;
  const others: Array<Promise<Read>> = [];
  let joined!: () => void;
  const joining = new Promise<void>((r) => {
    joined = r;
  });
  // The leader reads normally; once its stream has started, an idle joiner and three more.
  const leader = readAll(body, () => {
    void idleClient(body).then((c) => {
      idle = c;
      // One more reader beside the leader: see the case above on readers falling behind each other.
      others.push(readAll(body));
      joined();
    });
  });
  await joining;
  const reads = await within(Promise.all([leader, ...others]), 20_000, 'the members beside an idle joiner');
  for (const r of reads) {
    t.equal(r.status, 200);
    t.ok(r.whole, `a member got the whole stream (${r.bytes} bytes)`);
  }
  t.equal(reads[0]!.cache, 'miss', 'the leader went upstream');
  t.equal(reads[1]!.cache, 'coalesced', 'the others joined the flight');
  t.equal(await cuts() - before, 1, 'the idle joiner was cut');
  t.comment(`gateway RSS after the stream: ${Math.round(rssBytes(gw.child.pid!) / 1048576)} MiB`);
  const got = await idle!.drain();
  t.ok(got.startsWith('HTTP/1.1 200'), 'the idle joiner had its head');
  t.notOk(got.includes('data: [DONE]'), 'its stream was cut, not ended');
  t.ok(got.length < reads[0]!.bytes, `it got part of the stream only (${got.length} bytes)`);
});

t.test('a request alone keeps plain backpressure: its slow client pauses the upstream and is never cut', async (t) => {
  const body = bodyOf('alone');
  const before = await cuts(true);
  const idle = await idleClient(body);
  await sleep(1_500);
  t.equal(await cuts() - before, 0, 'not cut');
  const got = await within(idle.drain(), 20_000, 'the lone slow client');
  t.ok(got.includes('data: [DONE]'), `it got the whole stream once it read (${got.length} bytes)`);
  t.equal(await cuts() - before, 0, 'still not cut');
});
