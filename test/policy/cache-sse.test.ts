// The response cache with OpenAI-style streams: a streamed chat completion (SSE) that is
// cacheable (temperature 0, or asked for with `x-sluice-cache: on`) is stored whole and a
// hit replays it as the same text/event-stream, chunk by chunk in the framing it arrived
// in, ending with `data: [DONE]`, without calling the upstream again.

import { connect } from 'node:net';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { gwMetric } from '../helpers/policy.js';
import { replicaPorts, simStats, startGateway, type Gateway } from '../helpers/procs.js';

// This file's gateway allocates its simulator's port from 18940-18949.
const RANGE = { from: 18940, to: 18949 };
const TOKENS = 8;
let gw: Gateway;
let simPort: number;

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [
      { model: 'sse', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '10', '--token-ms', '20', '--tokens', String(TOKENS)] },
    ],
  });
  [simPort] = (await replicaPorts(gw, 'sse-1')) as [number];
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

const PATH = '/sse-1/v1/chat/completions';

function chat(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Reply> {
  return httpRequest(`${gw.url}${PATH}`, {
    method: 'POST',
    body: JSON.stringify({ model: 'demo', stream: true, ...body }),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/** Upstream requests the simulator saw while `fn` ran. */
async function upstreamCalls<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const before = (await simStats(simPort)).requests;
  const out = await fn();
  return [out, (await simStats(simPort)).requests - before];
}

/** The SSE events of a body, without their blank-line separators. */
const events = (body: string): string[] => body.split('\n\n').filter((e) => e !== '');

/**
 * The same request sent on a raw socket (`Connection: close`), read to the end; returns the
 * status, the headers and the payload of each HTTP/1.1 chunk as framed on the wire.
 */
function rawChunks(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string>; chunks: string[] }> {
  const payload = JSON.stringify({ model: 'demo', stream: true, ...body });
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const head = `POST ${PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n${extra}\r\n`;
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port: gw.port });
    const parts: Buffer[] = [];
    sock.setTimeout(10_000, () => sock.destroy(new Error('raw request timed out')));
    sock.on('data', (d: Buffer) => parts.push(d));
    sock.once('error', reject);
    sock.once('close', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      const end = raw.indexOf('\r\n\r\n');
      if (end === -1) {
        reject(new Error(`no response head: ${JSON.stringify(raw)}`));
        return;
      }
      const lines = raw.slice(0, end).split('\r\n');
      const hs: Record<string, string> = {};
      for (const l of lines.slice(1)) hs[l.slice(0, l.indexOf(':')).trim().toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      const chunks: string[] = [];
      let at = end + 4;
      for (;;) {
        const eol = raw.indexOf('\r\n', at);
        if (eol === -1) {
          reject(new Error(`chunked body cut short: ${JSON.stringify(raw.slice(end + 4))}`));
          return;
        }
        const size = parseInt(raw.slice(at, eol), 16);
        if (size === 0) break;
        // Chunk sizes count bytes; the SSE text here is ASCII, so bytes and characters agree.
        chunks.push(raw.slice(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers: hs, chunks });
    });
    sock.write(head + payload);
  });
}

t.test('a streamed chat completion at temperature 0 is stored, and a hit replays the SSE stream', async (t) => {
  const req = { messages: [{ role: 'user', content: 'replay this stream' }], temperature: 0 };
  const hitsBefore = await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'sse-1', tier: 'memory' });
  const [[first, second], calls] = await upstreamCalls(async () => [await chat(req), await chat(req)]);
  t.equal(calls, 1, 'the simulator saw one request');

  t.equal(first.status, 200);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.match(first.headers['content-type'], /^text\/event-stream/);
  t.ok(first.complete, 'the first stream ended properly');
  const sent = events(first.body);
  t.equal(sent.length, TOKENS + 2, `${TOKENS} token events, the finish event and [DONE]`);
  t.equal(sent.at(-1), 'data: [DONE]', 'the upstream stream ends with data: [DONE]');

  t.equal(second.status, 200);
  t.equal(second.headers['x-sluice-cache'], 'hit', 'the second is a hit');
  t.equal(second.headers['content-type'], first.headers['content-type'], 'the same content-type (text/event-stream)');
  t.equal(second.headers['transfer-encoding'], 'chunked', 'replayed as a chunked stream');
  t.equal(second.headers['content-length'], undefined, 'not as one length-framed body');
  t.ok(second.complete, 'the replay ended properly');
  t.same(events(second.body), sent, 'the same events, in the same order');
  t.equal(second.body, first.body, 'byte for byte');
  t.ok(events(second.body).every((e) => e.startsWith('data: ')), 'every event is a data: line');
  const deltas = events(second.body).slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as { object: string; choices: Array<{ delta: { content?: string } }> });
  t.ok(deltas.every((d) => d.object === 'chat.completion.chunk'), 'each event before [DONE] is a chat.completion.chunk');
  t.ok(second.chunks.length > 1, `delivered in several pieces (${second.chunks.length})`);
  t.ok(second.chunks.every((c) => c.text.endsWith('\n\n')), 'each piece is whole events');
  t.ok(second.headers['x-request-id'] !== first.headers['x-request-id'], 'the hit has its own request id');
  t.equal(await gwMetric(gw, 'sluice_cache_hits_total', { deployment: 'sse-1', tier: 'memory' }) - hitsBefore, 1, 'counted as a memory hit');
});

t.test('on the wire: a hit is framed chunk by chunk like the stream it was stored from', async (t) => {
  const req = { messages: [{ role: 'user', content: 'frame by frame' }], temperature: 0 };
  const [[miss, hit], calls] = await upstreamCalls(async () => [await rawChunks(req), await rawChunks(req)]);
  t.equal(calls, 1, 'one upstream call');
  t.equal(miss.headers['x-sluice-cache'], 'miss');
  t.equal(hit.headers['x-sluice-cache'], 'hit');
  t.equal(hit.status, 200);
  t.equal(hit.headers['transfer-encoding'], 'chunked');
  t.ok(hit.chunks.length > 1, `several HTTP chunks (${hit.chunks.length})`);
  t.same(hit.chunks, miss.chunks, 'the same HTTP chunks as the live stream, one for one');
  t.ok(hit.chunks.every((c) => c.endsWith('\n\n')), 'every chunk holds whole SSE events');
  t.equal(events(hit.chunks.join('')).at(-1), 'data: [DONE]', 'the last event is data: [DONE]');
});

t.test('a stream that is not deterministic bypasses the cache, unless the client asks for it', async (t) => {
  const req = { messages: [{ role: 'user', content: 'be creative' }], temperature: 0.8 };
  const [[a, b], calls] = await upstreamCalls(async () => [await chat(req), await chat(req)]);
  t.equal(a.headers['x-sluice-cache'], 'bypass');
  t.equal(b.headers['x-sluice-cache'], 'bypass');
  t.equal(calls, 2, 'both went upstream');

  const on = { 'x-sluice-cache': 'on' };
  const [[c, d], calls2] = await upstreamCalls(async () => [await chat(req, on), await chat(req, on)]);
  t.equal(c.headers['x-sluice-cache'], 'miss');
  t.equal(d.headers['x-sluice-cache'], 'hit', 'x-sluice-cache: on');
  t.equal(calls2, 1, 'one upstream call');
  t.match(d.headers['content-type'], /^text\/event-stream/);
  t.equal(d.headers['transfer-encoding'], 'chunked');
  t.same(events(d.body), events(c.body), 'the same events');
  t.equal(events(d.body).at(-1), 'data: [DONE]');
});
