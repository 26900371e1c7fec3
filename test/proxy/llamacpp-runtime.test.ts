// The `llamacpp` runtime end to end: sluice launches llama-cpp-python's server itself
// (`python -m llama_cpp.server`) on the tiny random-weight GGUF of the test set-up
// (test/fixtures/llama-server.ts; DESIGN.md "Real parts"), and the official `openai` npm
// client talks to it through the gateway: a token stream chunk by chunk, usage counted
// against a token limit, a client abort that stops the generation, and the name the
// server knows its model by, learnt by the control plane.
//
// Each server is a process with its own copy of the model: two only. `tiny-1` comes from
// the config file (interpreter by default: the project's .venv-llama) and serves every
// test but the limit; `tiny-2` is made through the admin API, with a token limit.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { RateLimitError } from 'openai';
import t from 'tap';
import { LLAMA_THREADS, llamaPython, writeTinyGguf } from '../fixtures/llama-server.js';
import { adminClient, assertNoServersLeft, canBind, PidLog, reapServers, waitFor, type AdminClient, type DeploymentView } from '../helpers/control.js';
import { metric } from '../helpers/http.js';
import { metricsText, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18870-18889 belong to this file.
const RANGE = { from: 18870, to: 18889 };
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** `tiny-1`'s --model_alias: what its server lists, unlike the deployment's model name. */
const ALIAS = 'tiny-q8';
/** The abort test's generation: some 25 s of a core here (llama-cpp-python's work per token grows with the text), if the abort is lost. */
const LONG_TOKENS = 3_900;
const MESSAGES = [{ role: 'user' as const, content: 'Say something.' }];

const dir = mkdtempSync(join(tmpdir(), 'sluice-llamacpp-'));
const modelPath = join(dir, 'tiny.gguf');
const pids = new PidLog();
let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  await writeTinyGguf(modelPath);
  gw = await startGateway({
    ports: RANGE,
    deployments: [{
      model: 'tiny', version: '1', runtime: 'llamacpp', model_path: modelPath,
      // Room for the abort test's long generation (the GGUF says 256).
      args: ['--model_alias', ALIAS, '--n_ctx', '4096', ...LLAMA_THREADS],
    }],
  });
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
  rmSync(dir, { recursive: true, force: true });
});

/** CPU time a process has used (user + system), from /proc: clock ticks of 10 ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After the command in parentheses: state, ppid, ... utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The official client on a deployment's OpenAI base URL; no retries, so that a 429 reaches the test. */
const client = (id: string): OpenAI => new OpenAI({ baseURL: `${gw.url}/${id}/v1`, apiKey: 'unused', maxRetries: 0 });

/** The deployment's view once the control plane has learnt the name its server reports. */
const withServedModel = (id: string): Promise<DeploymentView> =>
  waitFor(async () => {
    const d = await admin.deployment(id);
    return d === null || d.served_model === null || d.served_model === undefined ? undefined : d;
  }, 10_000, `${id}'s served_model`);

t.test('sluice starts the server on a port of its range; the admin API shows it and the model name it reports', async (t) => {
  const d = await withServedModel('tiny-1');
  pids.note(d);
  t.match(d, { id: 'tiny-1', runtime: 'llamacpp', state: 'ready', source: 'config' });
  t.equal(d.served_model, ALIAS, 'served_model: the alias the server lists, not the deployment\'s model name');
  t.equal(d.replicas.length, 1);
  const r = d.replicas[0]!;
  t.ok(r.port >= RANGE.from && r.port <= RANGE.to, `port ${r.port} from the gateway's range`);
  t.equal(r.url, `http://127.0.0.1:${r.port}`);
  t.equal(r.state, 'ready');
  const argv = readFileSync(`/proc/${r.pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  t.same(argv.slice(0, 11), [llamaPython(), '-m', 'llama_cpp.server', '--model', modelPath, '--host', '127.0.0.1', '--port', String(r.port), '--interrupt_requests', 'False'],
    'python -m llama_cpp.server with sluice\'s options first, from the project\'s .venv-llama by default');
  t.same(argv.slice(11), ['--model_alias', ALIAS, '--n_ctx', '4096', ...LLAMA_THREADS], 'then the deployment\'s args');

  const listed = await client('tiny-1').models.list();
  t.same(listed.data.map((m) => m.id), [ALIAS], 'the SDK lists the same model through the gateway');
});

t.test('a plain SDK request carries no x-request-id of its own: the gateway\'s UUID passes the server\'s check', async (t) => {
  const { data, response } = await client('tiny-1').chat.completions.create({ model: ALIAS, max_tokens: 4, messages: MESSAGES }).withResponse();
  t.equal(response.status, 200);
  t.match(response.headers.get('x-request-id'), UUID_V4, 'the id sluice made (the server answers 400 to ids that are not UUIDs)');
  t.equal(data.choices[0]!.finish_reason, 'length');
  t.equal(data.usage?.completion_tokens, 4);
});

// The server answers an empty 400 to an x-request-id that is not a UUID (starlette-context's
// check): a client sending its own trace id got that for every request (tester O's O7).
t.test('a client\'s own x-request-id that is not a UUID: echoed to it, and the server gets a UUID in its place', async (t) => {
  for (const id of ['my-trace-123', '0123456789abcdef0123456789abcdef']) {
    const { data, response } = await client('tiny-1').chat.completions.create({ model: ALIAS, max_tokens: 2, messages: MESSAGES }, { headers: { 'x-request-id': id } }).withResponse();
    t.equal(response.status, 200, `${id}: answered`);
    t.equal(response.headers.get('x-request-id'), id, `${id}: the client's id comes back`);
    t.equal(data.usage?.completion_tokens, 2);
  }
});

t.test('a stream arrives chunk by chunk through the SDK, the last with finish_reason', async (t) => {
  const TOKENS = 24;
  const { data: stream, response } = await client('tiny-1').chat.completions.create({ model: ALIAS, stream: true, max_tokens: TOKENS, messages: MESSAGES }).withResponse();
  t.match(response.headers.get('content-type'), /^text\/event-stream/);
  t.match(response.headers.get('x-request-id'), UUID_V4);
  const chunks: OpenAI.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  t.ok(chunks.length > TOKENS, `${chunks.length} chunks, each parsed by the SDK`);
  t.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.choices.length === 1), 'every one a chat.completion.chunk');
  const content = chunks.map((c) => c.choices[0]!.delta.content ?? '');
  t.equal(content.filter((text) => text !== '').length, TOKENS, 'one content chunk per token');
  t.match(content.join(''), /^[\x20-\x7e]+$/, `streamed text: ${JSON.stringify(content.join(''))}`);
  t.same(chunks.slice(0, -1).map((c) => c.choices[0]!.finish_reason), chunks.slice(0, -1).map(() => null), 'no finish_reason before the last chunk');
  t.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'length', 'the last chunk finishes (max_tokens reached)');
});

t.test('a client abort mid-generation reaches the server, which stops generating', async (t) => {
  const aborts = async (): Promise<number> => metric(await metricsText(gw), 'sluice_client_aborts_total', { deployment: 'tiny-1' });
  const abortsBefore = await aborts();
  const logged = async (): Promise<number> => (await admin.get<{ lines: Array<{ line: string }> }>('/v1/deployments/tiny-1/logs?tail=100000')).body.lines
    .filter((l) => l.line.includes('Disconnected from client')).length;
  const disconnectsBefore = await logged();

  const controller = new AbortController();
  const stream = await client('tiny-1').chat.completions.create({ model: ALIAS, stream: true, max_tokens: LONG_TOKENS, messages: MESSAGES }, { signal: controller.signal });
  let received = 0;
  let finished = false;
  // The SDK ends the iteration quietly when its caller aborts.
  for await (const chunk of stream) {
    finished ||= chunk.choices[0]?.finish_reason != null;
    if ((chunk.choices[0]?.delta.content ?? '') !== '' && ++received === 5) controller.abort();
  }
  t.ok(received >= 5, `${received} content chunks (what had arrived before the abort)`);
  t.notOk(finished, 'the generation had not finished');

  // llama-cpp-python checks for a disconnect after every token it sends, and prints this.
  await waitFor(async () => (await logged()) > disconnectsBefore, 10_000, 'the server to log the disconnect');
  t.pass('the server logged "Disconnected from client" (GET /v1/deployments/tiny-1/logs)');
  await waitFor(async () => (await aborts()) === abortsBefore + 1, 5_000, 'sluice_client_aborts_total to count it');
  t.pass('sluice_client_aborts_total counted the abort');

  // Measured without sending it anything: only a generation the abort did not stop can keep it busy.
  const pid = (await admin.deployment('tiny-1'))!.replicas[0]!.pid!;
  const before = cpuMs(pid);
  await sleep(1_000);
  const used = cpuMs(pid) - before;
  t.ok(used < 200, `the server is idle: ${used} ms of CPU in the next second (a generation takes a whole core)`);
  const next = await client('tiny-1').chat.completions.create({ model: ALIAS, max_tokens: 4, messages: MESSAGES });
  t.equal(next.choices[0]!.finish_reason, 'length', 'and it serves the next request');
});

t.test('through the admin API, with a token limit: usage counts, and the SDK gets a RateLimitError', async (t) => {
  // What one completion costs (prompt + completion tokens): the model never ends early.
  const probe = await client('tiny-1').chat.completions.create({ model: ALIAS, max_tokens: 8, messages: MESSAGES });
  const cost = probe.usage!.total_tokens;
  t.equal(probe.usage!.completion_tokens, 8);
  // Room for one completion and a half: the second is admitted (tokens left), the third
  // not (the bucket is below zero; refilling takes some 20 s). A response charged at
  // anything but its usage moves the refusal.
  const limit = Math.ceil(cost * 1.5);
  const made = await admin.post('/v1/deployments?wait=true', {
    model: 'tiny', version: '2', runtime: 'llamacpp', model_path: modelPath, python: llamaPython(), args: [...LLAMA_THREADS],
    policies: { rate_limit: { tokens_per_minute: limit } },
  });
  t.equal(made.status, 201, 'deployed', { body: made.body });
  t.match(made.body, { id: 'tiny-2', runtime: 'llamacpp', state: 'ready', source: 'api' });
  pids.note(made.body);
  t.equal((await withServedModel('tiny-2')).served_model, modelPath, 'without --model_alias the server lists its model path');

  const sdk = client('tiny-2');
  for (const n of [1, 2]) {
    const c = await sdk.chat.completions.create({ model: modelPath, max_tokens: 8, messages: MESSAGES });
    t.equal(c.usage?.total_tokens, cost, `completion ${n} admitted, ${cost} tokens`);
  }
  const refused = await sdk.chat.completions.create({ model: modelPath, max_tokens: 8, messages: MESSAGES }).then(() => null, (err: unknown) => err);
  t.type(refused, RateLimitError, 'the third: RateLimitError');
  const err = refused as RateLimitError;
  t.equal(err.status, 429);
  t.equal(err.code, 'SLUICE_ERR_RATE_LIMITED', 'refused by sluice');
  t.match(err.message, `tokens_per_minute (${limit}) of deployment tiny-2`, 'by the deployment\'s token limit');
  t.equal(err.headers.get('ratelimit-limit'), String(limit));
  t.ok(Number(err.headers.get('retry-after')) >= 10, `retry-after ${err.headers.get('retry-after')} s: the bucket is well below zero`);
});

t.test('the SDK at the gateway root: the body\'s model picks the llama.cpp deployment, renamed to what its server lists', async (t) => {
  const root = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  t.same((await root.models.list()).data.map((m) => m.id).sort(), ['tiny', 'tiny-1', 'tiny-2'], 'the deployments and their alias');
  // The server's answer names the model it was asked for: the rewritten name, not `tiny-1`.
  const c = await root.chat.completions.create({ model: 'tiny-1', max_tokens: 3, messages: MESSAGES });
  t.equal(c.model, ALIAS, 'tiny-1 answered, asked for its served_model');
  const stream = await root.chat.completions.create({ model: 'tiny-1', stream: true, max_tokens: 4, messages: MESSAGES });
  let content = 0;
  for await (const chunk of stream) if (chunk.choices[0]?.delta.content) content++;
  t.equal(content, 4, 'streamed token by token');
  // tiny-2's token limit (the test above) still refuses: the request went to tiny-2, not tiny-1.
  const limited = await root.chat.completions.create({ model: 'tiny-2', max_tokens: 3, messages: MESSAGES }).then(() => null, (err: unknown) => err);
  t.type(limited, RateLimitError, 'tiny-2 by name');
});

t.test('the servers stop with the gateway: no process left, ports free', async (t) => {
  const views = await admin.list();
  pids.note(views);
  t.equal(pids.pids.size, 2, 'two servers ran');
  t.equal(await gw.stop(), 0, 'the gateway exited 0');
  // No wait: the gateway exits only once its servers have.
  await assertNoServersLeft(t, pids.pids, RANGE, 0);
  for (const port of views.flatMap((d) => d.replicas.map((r) => r.port))) t.ok(await canBind(port), `port ${port} is free`);
});
