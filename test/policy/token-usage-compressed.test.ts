// Token usage of compressed answers. The official SDKs accept gzip (Python's httpx sends
// `Accept-Encoding: gzip, deflate`, the JavaScript SDK's fetch too) and the gateway passes
// that on, so a provider that compresses answers the client in gzip or brotli: its usage
// must still be counted, for tokens_per_minute, the cost and the token metrics, and the
// client must still get the bytes as the provider sent them.
//
// Every port of this file: 26540 (the upstream), 26541-26543 (replicas: none spawned); the
// gateway and admin ports are ephemeral.

import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { brotliCompressSync, constants, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { adminClient, waitFor, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const UPSTREAM_PORT = 26540;
const USAGE = { prompt_tokens: 11, completion_tokens: 50, total_tokens: 61 };
let gw: Gateway;
let admin: AdminClient;
let upstream: Server;

/**
 * The body coded as the client accepts, first of gzip, br, deflate, as servers choose.
 * `raw-deflate` (a coding made up for this test, passed on by the gateway): the raw deflate
 * some servers send as `deflate`.
 */
function encode(body: Buffer, accept: string): [string | null, Buffer] {
  if (accept.includes('raw-deflate')) return ['deflate', deflateRawSync(body)];
  if (accept.includes('gzip')) return ['gzip', gzipSync(body)];
  if (accept.includes('br')) return ['br', brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } })];
  if (accept.includes('deflate')) return ['deflate', deflateSync(body)];
  return [null, body];
}

t.before(async () => {
  upstream = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const asked = JSON.parse(Buffer.concat(parts).toString()) as { stream?: boolean; big?: boolean };
      const streamed = asked.stream === true;
      // `big`: an answer of 12 MiB of text that does not compress, its usage at the end.
      const content = asked.big === true ? randomBytes(9 * 1024 * 1024).toString('base64') : 'ok';
      const body = Buffer.from(streamed
        ? `${'data: {"choices":[{"index":0,"delta":{"content":"hi "}}]}\n\n'.repeat(5)}data: {"choices":[],"usage":${JSON.stringify(USAGE)}}\n\ndata: [DONE]\n\n`
        : JSON.stringify({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content } }], usage: USAGE }));
      const [coding, bytes] = encode(body, req.headers['accept-encoding'] ?? '');
      const headers: Record<string, string> = { 'content-type': streamed ? 'text/event-stream' : 'application/json', ...(coding === null ? {} : { 'content-encoding': coding }) };
      if (!streamed) {
        res.writeHead(200, { ...headers, 'content-length': String(bytes.length) }).end(bytes);
        return;
      }
      // A stream in two pieces, cut inside the compressed bytes.
      res.writeHead(200, headers);
      res.write(bytes.subarray(0, 10));
      setTimeout(() => res.end(bytes.subarray(10)), 20);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    ports: { from: 26541, to: 26543 },
    deployments: [{
      model: 'provider', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false },
      cost: { per_1k_input_tokens: 1, per_1k_output_tokens: 1 }, policies: { cache: { enabled: false } },
    }],
  });
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});

interface Counted { input_tokens: number; output_tokens: number }

/** The tokens counted once they are `before`'s plus the answer's (the last bytes of a compressed one are decoded on zlib's threads, a moment after the client has them). */
async function countedAfter(before: Counted, t: Test): Promise<void> {
  const after = await waitFor(async () => {
    const now = await counted();
    return now.input_tokens - before.input_tokens >= 11 && now;
  }, 5_000, 'the answer\'s tokens counted').catch(() => counted());
  t.same({ input: after.input_tokens - before.input_tokens, output: after.output_tokens - before.output_tokens }, { input: 11, output: 50 },
    'prompt and completion tokens counted (0 when the compressed bytes were scanned as they came)');
}

async function counted(): Promise<Counted> {
  const stats = (await admin.get<{ deployments: Array<Counted & { deployment: string }> }>('/v1/stats')).body;
  const d = stats.deployments.find((x) => x.deployment === 'provider-1')!;
  return { input_tokens: d.input_tokens, output_tokens: d.output_tokens };
}

/** fetch: it decodes the body as its Content-Encoding says, which the test then reads. */
function chat(acceptEncoding: string, stream: boolean, big = false): Promise<Response> {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'accept-encoding': acceptEncoding },
    body: JSON.stringify({ model: 'provider', stream, big, messages: [{ role: 'user', content: 'hi' }] }),
  });
}

for (const [accept, coding] of [['identity', null], ['gzip, deflate', 'gzip'], ['br', 'br'], ['deflate', 'deflate'], ['raw-deflate', 'deflate']] as const) {
  for (const stream of [false, true]) {
    t.test(`Accept-Encoding: ${accept}, ${stream ? 'streamed' : 'whole'}: the usage the answer reports is counted`, async (t) => {
      const before = await counted();
      const reply = await chat(accept, stream);
      t.equal(reply.status, 200);
      t.equal(reply.headers.get('content-encoding'), coding, 'the client gets the coding the provider chose');
      t.match(await reply.text(), '"completion_tokens":50', 'and its bytes as sent (they decode)');
      await countedAfter(before, t);
    });
  }
}

// Only the first 4 MiB of a compressed answer had been kept and read (at its end, all at
// once, on the worker thread): the usage of a longer one, at its end, was never counted.
for (const accept of ['gzip', 'br']) {
  t.test(`a ${accept} answer of 12 MiB, which compresses to as much: its usage, at the end, is counted`, async (t) => {
    const before = await counted();
    const reply = await chat(accept, false, true);
    t.equal(reply.status, 200);
    const text = await reply.text();
    t.ok(text.length > 12 * 1024 * 1024, 'the whole answer came');
    t.match(text.slice(-200), '"completion_tokens":50');
    await countedAfter(before, t);
  });
}
