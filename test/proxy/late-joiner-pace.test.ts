// A late joiner of a coalesced request catches up at its client's pace. Its catch-up (what
// the flight recorded before it came, up to max_entry_bytes) was written all at once, so each
// late joiner that did not read held a copy of it: 100 of them, 3 MB into a stream, grew the
// gateway by ~270 MiB here. Now each holds about one catch-up write (256 KiB) beyond what its
// socket took, goes on as it drains, then gets the live reads; what it gets is the stream.
// (test/proxy/flight-pace.test.ts checks that joiners still keep up with a fast upstream.)

import t from 'tap';
import { rssBytes, sleep } from '../helpers/procs.js';
import { burstThenDripServer, fetchWhole as fetchAnswer, gatewayOverServer, peakRss, resetPeak, stalledClients as stalledReaders, type WholeAnswer } from '../helpers/stalled-readers.js';

// A model server that sends 3 MB of large events at once, then small ones, one every
// millisecond, for some seconds: late joiners come while it drips, 3 MB recorded.
const SERVER = burstThenDripServer({ bigKiB: 30, bigCount: 100, smallCount: 6000 });

// This file's gateway allocates its model server's port from 23545-23549.
const served = gatewayOverServer(t, { model: 'late', ports: { from: 23545, to: 23549 }, server: SERVER, tmpPrefix: 'sluice-late-joiner-' });
const PATH = '/late-1/v1/chat/completions';

const bodyOf = (prompt: string): string => JSON.stringify({ model: 'late', stream: true, temperature: 0, messages: [{ role: 'user', content: prompt }] });
const fetchWhole = (body: string, onHead?: () => void): Promise<WholeAnswer> => fetchAnswer(`${served.gw.url}${PATH}`, body, onHead);
const stalledClients = (n: number, reading: number, body: string): ReturnType<typeof stalledReaders> => stalledReaders(served.gw.port, PATH, n, reading, body);

t.test('late joiners that read nothing do not each hold the recording; one that reads gets the stream', async (t) => {
  const pid = served.gw.child.pid!;
  // The same stream once, alone: what a first stream allocates is not the late joiners'.
  await fetchWhole(bodyOf('warm-up'));
  const body = bodyOf('late joiners');
  let headed!: () => void;
  const head = new Promise<void>((r) => {
    headed = r;
  });
  const leader = fetchWhole(body, headed);
  await head;
  // The burst is recorded by now: the joiners below each have 3 MB to catch up on.
  await sleep(700);
  resetPeak(pid);
  const before = rssBytes(pid);
  const late = fetchWhole(body);
  const clients = stalledClients(100, 5, body);
  await clients.ready;
  await sleep(1500);
  const grown = (peakRss(pid) - before) / 1048576;
  t.comment(`gateway RSS ${Math.round(before / 1048576)} MiB, at most ${Math.round(before / 1048576 + grown)} MiB with 100 stalled late joiners`);
  t.ok(grown < 160, `the gateway grew by ${grown.toFixed(1)} MiB (a copy of the recording per joiner: ~370 MiB)`);
  const [led, got] = await Promise.all([leader, late]);
  t.equal(led.cache, 'miss');
  t.equal(got.cache, 'coalesced', 'the late reader joined the flight');
  t.ok(led.bytes > 3_000_000, `the stream is large (${led.bytes} bytes)`);
  t.equal(got.digest, led.digest, 'the late reader got the stream the leader got');
  const lines = (await clients.readAll()).trim().split('\n').slice(1);
  t.equal(lines.length, 5, 'the stalled clients that then read got an answer');
  for (const l of lines) t.match(l, / True False$/, `one got a whole stream (${l}), its head said coalesced, not hit`);
});
