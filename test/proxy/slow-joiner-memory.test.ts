// A client that stops reading while a coalesced stream is relayed to it costs the gateway
// what it was sent, not a write buffer per upstream read. Each relayed read is one write to
// its socket; once the socket was full, libuv queued the write behind the one in flight and
// kept the thread's whole output buffer (64 KiB) for it, a fresh one taking its place: a
// stream of small SSE events (one read each) pinned ~4 KiB of resident memory (64 KiB of
// address space) per event until the client was 8 MiB behind and cut (here 25,000 events
// grew the gateway by ~140 MiB; now ~35, mostly garbage not yet collected).

import t from 'tap';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { rssBytes, sleep } from '../helpers/procs.js';
import { burstThenDripServer, gatewayOverServer, peakRss, requestText, resetPeak } from '../helpers/stalled-readers.js';

// A model server whose stream, once a second client has joined it, first fills the kernel's buffers towards a client that does
// not read (5 MiB in large events: loopback's take some MiB), then goes on in small events,
// one a millisecond, as a model's tokens come: each one reaches the gateway as a read of its own.
const SMALL_EVENTS = 25_000;
const SERVER = burstThenDripServer({ bigKiB: 64, bigCount: 80, smallCount: SMALL_EVENTS, smallFields: '"id":"chatcmpl-1","object":"chat.completion.chunk",', holdMs: 1000 });

// This file's gateway allocates its model server's port from 23530-23534.
const served = gatewayOverServer(t, { model: 'drip', ports: { from: 23530, to: 23534 }, server: SERVER, tmpPrefix: 'sluice-slow-joiner-' });
const PATH = '/drip-1/v1/chat/completions';

const bodyOf = (prompt: string): string => JSON.stringify({ model: 'drip', stream: true, temperature: 0, messages: [{ role: 'user', content: prompt }] });
const requestOf = (body: string): string => requestText(PATH, body);
const request = requestOf(bodyOf('slow joiner'));

/** Reads the whole answer as it comes; resolves with its byte count once the connection ends. */
function reader(onFirstBytes: () => void, text = request): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(served.gw.port, '127.0.0.1', () => socket.write(text));
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      if (bytes === 0) onFirstBytes();
      bytes += c.length;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(bytes));
  });
}

/**
 * A client with a 4 KiB receive buffer (Node cannot set SO_RCVBUF) that sends the request and
 * reads nothing until stdin closes; then prints the head it got.
 */
function stalledClient(): { head: Promise<string>; release(): void } {
  const script = [
    'import socket, sys',
    's = socket.socket()',
    's.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)',
    `s.connect(("127.0.0.1", ${served.gw.port}))`,
    `s.sendall(${JSON.stringify(request)}.encode())`,
    'print("sent", flush=True)',
    'sys.stdin.read()',
    's.settimeout(5)',
    'print(s.recv(512).decode("latin1"), flush=True)',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString('latin1');
  });
  return {
    head: new Promise((resolve) => child.on('close', () => resolve(out))),
    release: () => child.stdin.end(),
  };
}

t.test('a joiner that reads nothing costs about what it was sent', async (t) => {
  const pid = served.gw.child.pid!;
  // The same stream once alone first: the heaps and buffers a first stream grows (some 30
  // MiB, read by no one afterwards) are not the stalled joiner's.
  await reader(() => {}, requestOf(bodyOf('warm-up')));
  let joined!: () => void;
  const joining = new Promise<void>((r) => {
    joined = r;
  });
  let idle: ReturnType<typeof stalledClient> | null = null;
  const leader = reader(() => {
    idle = stalledClient();
    joined();
  });
  await joining;
  await sleep(500);
  // The peak, not the resident memory after: a collection meanwhile may free more than the stall holds.
  resetPeak(pid);
  const before = rssBytes(pid);
  const got = await leader;
  const after = peakRss(pid);
  t.ok(got > 5 * 1048576 + SMALL_EVENTS * 80, `the leader read the whole stream (${got} bytes)`);
  const grown = (after - before) / 1048576;
  t.comment(`gateway RSS ${Math.round(before / 1048576)} MiB, at most ${Math.round(after / 1048576)} MiB while ${Math.round(got / 1048576 * 10) / 10} MiB were relayed to a client reading nothing`);
  // What the kernel did not take is held for the stalled joiner once (some MiB), and the
  // first 4 MiB were recorded for the cache (max_entry_bytes) before the answer outgrew it.
  t.ok(grown < 70, `the gateway grew by ${grown.toFixed(1)} MiB (a 64 KiB buffer kept per small event: ~100 MiB more)`);
  idle!.release();
  const head = await idle!.head;
  t.match(head, /HTTP\/1\.1 200/, 'the stalled client had its head');
  t.match(head, /x-sluice-cache: coalesced/i, 'it shared the leader\'s upstream call');
});
