// The response token counter (src/policy/token-counter.ts), which cost, tokens-per-minute
// limits and the token metrics read: the usage a server reports is found however the
// response is cut into chunks, and a stream without usage counts its events.

import fc from 'fast-check';
import t from 'tap';
import { TokenCounter } from '../../src/policy/token-counter.js';

/** `body` cut at `cuts`, as a stream (its events counted) unless `streamed` is false. */
function count(body: string, cuts: readonly number[], streamed = true): TokenCounter {
  const bytes = Buffer.from(body, 'latin1');
  const counter = new TokenCounter();
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    const at = Math.min(cut, bytes.length);
    if (at > from) counter.observe(bytes.subarray(from, at), streamed);
    from = Math.max(from, at);
  }
  if (from < bytes.length) counter.observe(bytes.subarray(from), streamed);
  return counter;
}

const usage = fc.record({
  prompt: fc.nat({ max: 1_000_000 }),
  completion: fc.nat({ max: 1_000_000 }),
  space: fc.constantFrom('', ' ', '  ', '\n  '),
  padding: fc.string({ maxLength: 300 }).map((s) => s.replace(/[^a-z ]/g, 'x')),
});

t.test('OpenAI usage is read whole wherever the chunks are cut', async () => {
  fc.assert(
    fc.property(usage, fc.array(fc.nat({ max: 700 }), { maxLength: 12 }), ({ prompt, completion, space, padding }, cuts) => {
      const s = space;
      const body = `{"id":"x","choices":[{"message":{"content":"${padding}"}}],"usage":{"prompt_tokens"${s}:${s}${prompt},"completion_tokens"${s}:${s}${completion},"total_tokens":${s}${prompt + completion}}}`;
      const c = count(body, cuts);
      return c.reported && c.input === prompt && c.output === completion && c.tokens === prompt + completion;
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 cuts');
});

t.test('usage is read whole after text as dense in underscores as code, wherever the chunks are cut', async () => {
  // Words such as `_tokens` and `eval_count` without their quote are decoys.
  const code = fc.array(fc.constantFrom('a', '_', 'snake_case', ' ', '_tokens', 'eval_count', 'x_y_z', '__init__'), { maxLength: 200 }).map((w) => w.join(''));
  fc.assert(
    fc.property(usage, code, fc.array(fc.nat({ max: 1500 }), { maxLength: 12 }), fc.boolean(), ({ prompt, completion, space }, text, cuts, ollama) => {
      const s = space;
      const body = ollama
        ? `{"message":{"content":"${text}"},"done":true,"prompt_eval_count"${s}:${s}${prompt},"eval_count":${s}${completion}}`
        : `{"choices":[{"message":{"content":"${text}"}}],"usage":{"prompt_tokens"${s}:${s}${prompt},"completion_tokens"${s}:${s}${completion},"total_tokens":${s}${prompt + completion}}}`;
      const c = count(body, cuts, false);
      return c.reported && c.input === prompt && c.output === completion && c.tokens === prompt + completion;
    }),
    { numRuns: 2000 },
  );
});

t.test('Ollama counts (prompt_eval_count, eval_count) on the last NDJSON line', async () => {
  fc.assert(
    fc.property(usage, fc.array(fc.nat({ max: 400 }), { maxLength: 8 }), ({ prompt, completion }, cuts) => {
      const lines = ['{"response":"a","done":false}', '{"response":"b","done":false}', `{"response":"","done":true,"prompt_eval_count":${prompt},"eval_count":${completion}}`];
      const c = count(lines.join('\n') + '\n', cuts);
      return c.input === prompt && c.output === completion && c.tokens === prompt + completion;
    }),
    { numRuns: 1000 },
  );
});

t.test('Responses API usage (input_tokens, output_tokens) is split into input and output, streamed or not', async () => {
  fc.assert(
    fc.property(usage, fc.array(fc.nat({ max: 900 }), { maxLength: 12 }), fc.boolean(), ({ prompt, completion, space, padding }, cuts, withTotal) => {
      const s = space;
      const total = withTotal ? `,"total_tokens":${prompt + completion}` : '';
      const u = `{"input_tokens"${s}:${s}${prompt},"input_tokens_details":{"cached_tokens":3},"output_tokens":${s}${completion},"output_tokens_details":{"reasoning_tokens":5}${total}}`;
      // As a stream sends it: `usage: null` in response.created, the real one in response.completed.
      const body =
        `event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","usage":null}}\n\n` +
        `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"${padding}"}\n\n` +
        `event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","usage":${u}}}\n\n`;
      const c = count(body, cuts);
      return c.reported && c.input === prompt && c.output === completion && c.tokens === prompt + completion;
    }),
    { numRuns: 2000 },
  );
});

t.test('the largest of several usages wins (a zero usage on every chunk, the real one last)', async (t) => {
  const events = [1, 2, 3].map((i) => `data: {"choices":[{"delta":{"content":"t${i}"}}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}\n\n`);
  events.push('data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n', 'data: [DONE]\n\n');
  const c = count(events.join(''), [40, 41, 200, 333]);
  t.equal(c.input, 7);
  t.equal(c.output, 3);
  t.equal(c.tokens, 10);
});

t.test('a stream without usage: one token per event, however it is cut', async () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.nat({ max: 2000 }), { maxLength: 20 }), fc.boolean(), (n, cuts, crlf) => {
      const nl = crlf ? '\r\n' : '\n';
      const body = Array.from({ length: n }, (_, i) => `data: {"choices":[{"delta":{"content":"w${i}"}}]}${nl}${nl}`).join('');
      const c = count(body, cuts);
      return !c.reported && c.output === n && c.tokens === n && c.input === 0;
    }),
    { numRuns: 1000 },
  );
});

t.test('a stream without usage: its comments, event, id and retry lines and [DONE] are no tokens, however it is cut', async () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.nat({ max: 3000 }), { maxLength: 20 }), fc.boolean(), (n, cuts, crlf) => {
      const nl = crlf ? '\r\n' : '\n';
      const events = Array.from({ length: n }, (_, i) => `id: ${i}${nl}event: delta${nl}data: {"choices":[{"delta":{"content":"w${i}"}}]}${nl}${nl}`);
      const body = `: keep-alive${nl}${nl}retry: 3000${nl}${nl}${events.join('')}: ping${nl}${nl}data: [DONE]${nl}${nl}`;
      const c = count(body, cuts);
      return !c.reported && c.output === n && c.tokens === n;
    }),
    { numRuns: 1000 },
  );
});

t.test('an NDJSON stream without usage: one token per line', async (t) => {
  const c = count(Array.from({ length: 5 }, (_, i) => `{"response":"w${i}","done":false}\n`).join(''), [7, 40]);
  t.equal(c.output, 5);
});

t.test('an answer without usage is not reported (an MLflow prediction)', async (t) => {
  const c = count('{"predictions":[1,2,3]}', [5], false);
  t.equal(c.reported, false);
  t.equal(c.output, 1, 'cost and limits still charge it one token');
});

t.test('a key with no number after it is no usage', async (t) => {
  const c = count('{"text":"\\"total_tokens\\" is a field","total_tokens": "many"}', []);
  t.equal(c.reported, false);
});

t.test('a stream that says its server failed is told from one whose text only mentions an error', async (t) => {
  const failed = [
    '{"model":"m","message":{"content":"a"},"done":false}\n{"error":"an error was encountered while running the model"}\n',
    'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"out of memory"}}\n\ndata: [DONE]\n\n',
    'data:{ "error" : "x"}\r\n\r\n',
    'event: error\ndata: {"type":"error","code":"server_error"}\n\n',
    'event: response.failed\r\ndata: {"type":"response.failed"}\n\n',
    'data: {"type": "error", "message": "x"}\n\n',
  ];
  const whole = [
    'data: {"choices":[{"delta":{"content":"{\\"error\\": 1} is JSON"}}]}\n\ndata: [DONE]\n\n',
    '{"model":"m","message":{"content":"error"},"done":true,"error_count":0}\n',
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"error"}\n\n',
    'event: errors\ndata: {}\n\n',
    ': error\n\ndata: {"choices":[]}\n\n',
  ];
  for (const body of failed) {
    // Each event whole in its chunk (as servers write them), the stream cut between lines anywhere.
    const lines = body.split(/(?<=\n)/);
    const cuts: number[] = [];
    let at = 0;
    for (const l of lines) cuts.push((at += l.length));
    t.ok(count(body, cuts).reportedFailure, `failed: ${JSON.stringify(body)}`);
    t.ok(count(body, []).reportedFailure, `failed, in one chunk: ${JSON.stringify(body)}`);
  }
  for (const body of whole) t.notOk(count(body, [7, 30]).reportedFailure, `whole: ${JSON.stringify(body)}`);
  t.notOk(count('{"error":"x"}', [], false).reportedFailure, 'a whole JSON answer is not read for it (its status says it)');
});
