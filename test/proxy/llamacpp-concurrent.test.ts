// Requests that meet at a `llamacpp` replica: llama-cpp-python's server generates for one
// at a time, and by default (its interrupt_requests) ends a stream with `[DONE]` as soon as
// another request waits for the model, an answer cut short that the SDK takes for a whole
// one. Through the gateway, which sends it every client's requests, each must get its whole
// answer: the later one waits for the model instead.
//
// Replica ports 26500-26519 belong to this file (the gateway and admin ports are ephemeral).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import t from 'tap';
import { LLAMA_THREADS, writeTinyGguf } from '../fixtures/llama-server.js';
import { adminClient, PidLog, reapServers } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const RANGE = { from: 26500, to: 26519 };
/** Long enough that the second request comes while the first is still generating. */
const LONG_TOKENS = 1_000;
const SHORT_TOKENS = 8;
const MESSAGES = [{ role: 'user' as const, content: 'Say something.' }];

const dir = mkdtempSync(join(tmpdir(), 'sluice-llamacpp-concurrent-'));
const modelPath = join(dir, 'tiny.gguf');
const pids = new PidLog();
let gw: Gateway;

t.before(async () => {
  await writeTinyGguf(modelPath);
  gw = await startGateway({
    ports: RANGE,
    // Room for the long generation (the GGUF says 256).
    deployments: [{ model: 'tiny', version: '1', runtime: 'llamacpp', model_path: modelPath, args: ['--model_alias', 'tiny', '--n_ctx', '4096', ...LLAMA_THREADS] }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
  rmSync(dir, { recursive: true, force: true });
});

interface Streamed { content: number; finish: string | null }

/** Reads a stream to its end: its content chunks, and the finish_reason of its last chunk. */
async function drain(stream: AsyncIterable<OpenAI.ChatCompletionChunk>, onFirst?: () => void): Promise<Streamed> {
  const out: Streamed = { content: 0, finish: null };
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if ((choice?.delta.content ?? '') !== '' && ++out.content === 1) onFirst?.();
    out.finish = choice?.finish_reason ?? out.finish;
  }
  return out;
}

t.test('a stream the server is generating is not cut short by a request that comes meanwhile', async (t) => {
  pids.note(await adminClient(gw.adminUrl).list());
  const sdk = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const ask = (max: number): Promise<AsyncIterable<OpenAI.ChatCompletionChunk>> =>
    sdk.chat.completions.create({ model: 'tiny', stream: true, max_tokens: max, messages: MESSAGES });

  let second: Promise<Streamed> | undefined;
  // The second request leaves once the first one's tokens flow: the server is generating it.
  const first = await drain(await ask(LONG_TOKENS), () => {
    second = ask(SHORT_TOKENS).then((s) => drain(s));
  });
  t.ok(second !== undefined, 'the second request was sent while the first streamed');
  t.same(first, { content: LONG_TOKENS, finish: 'length' }, `the first stream: all ${LONG_TOKENS} tokens, then finish_reason length (cut short: fewer, and no finish_reason)`);
  t.same(await second, { content: SHORT_TOKENS, finish: 'length' }, 'the second one waited for the model, then got its whole answer');
});
