// A cache hit goes out at its client's pace. It was written whole in one go, so every
// client that did not read it held a copy of the entry (up to max_entry_bytes) in the
// gateway: 100 clients that asked for a cached 3.7 MB stream and read nothing grew it by
// ~300 MB. Now each holds about REPLAY_SLICE_BYTES (256 KiB) beyond what its socket took,
// and the replay goes on as it drains; hits read whole are the answer as it was stored.

import t from 'tap';
import { rssBytes, startGateway, type Gateway } from '../helpers/procs.js';
import { fetchWhole as fetchAnswer, peakRss, resetPeak, stalledClients as stalledReaders, type WholeAnswer } from '../helpers/stalled-readers.js';

// This file's gateway allocates its simulator's ports from 23540-23544.
let gw: Gateway;
const PATH = '/big-1/v1/chat/completions';

t.before(async () => {
  gw = await startGateway({
    ports: { from: 23540, to: 23544 },
    log: { level: 'info', access: false },
    // Streams of 18,000 tokens (~3.7 MB) and JSON answers of 200,000 (~1.6 MB): under the
    // default 4 MiB entry limit, and many slices long.
    deployments: [{ model: 'big', version: '1', runtime: 'sim', args: ['--tokens', '200000', '--token-ms', '0', '--ttft-ms', '0'] }],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

const bodyOf = (stream: boolean, prompt = 'pace'): string => JSON.stringify({ model: 'big', stream, temperature: 0, ...(stream ? { max_tokens: 18_000 } : {}), messages: [{ role: 'user', content: `${prompt} ${stream}` }] });
const fetchWhole = (body: string): Promise<WholeAnswer> => fetchAnswer(`${gw.url}${PATH}`, body);
const stalledClients = (n: number, reading: number, body: string): ReturnType<typeof stalledReaders> => stalledReaders(gw.port, PATH, n, reading, body);

t.test('hits of a large stream and of a large JSON answer are the stored answer, byte for byte', async (t) => {
  for (const stream of [true, false]) {
    const body = bodyOf(stream);
    const miss = await fetchWhole(body);
    const hit = await fetchWhole(body);
    t.equal(miss.cache, 'miss');
    t.equal(hit.cache, 'hit');
    t.ok(hit.bytes > 1024 * 1024, `${stream ? 'the stream' : 'the JSON answer'} is many slices long (${hit.bytes} bytes)`);
    t.equal(hit.framing, stream ? 'chunked' : 'length', 'in the framing it came in');
    t.equal(hit.digest, miss.digest, 'the hit is the answer the miss got');
  }
});

t.test('clients that read nothing of a large cached stream do not each hold a copy of it', async (t) => {
  const body = bodyOf(true, 'stalled');
  const miss = await fetchWhole(body);
  t.equal(miss.cache, 'miss');
  t.ok(miss.bytes > 3_000_000, `the entry is large (${miss.bytes} bytes)`);
  // Once read whole: what a hit allocates the first time is not the stalled clients'.
  t.equal((await fetchWhole(body)).cache, 'hit');
  const pid = gw.child.pid!;
  resetPeak(pid);
  const before = rssBytes(pid);
  const clients = stalledClients(100, 5, body);
  await clients.ready;
  await new Promise((r) => setTimeout(r, 1500));
  const grown = (peakRss(pid) - before) / 1048576;
  t.comment(`gateway RSS ${Math.round(before / 1048576)} MiB, at most ${Math.round(before / 1048576 + grown)} MiB with 100 stalled hits`);
  t.ok(grown < 120, `the gateway grew by ${grown.toFixed(1)} MiB (a copy of the entry per client: ~300 MiB)`);
  const lines = (await clients.readAll()).trim().split('\n').slice(1);
  t.equal(lines.length, 5, 'the clients that read got an answer');
  t.ok(lines.every((l) => l === `${lines[0]!.split(' ')[0]} True True`), 'each got the whole hit, ended');
  t.ok(Number(lines[0]!.split(' ')[0]) > miss.bytes, `the hit's bytes are the stream's and its framing (${lines[0]})`);
});
