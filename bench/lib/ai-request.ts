// The AI request of the bench (issue 19): what the official OpenAI SDK sends for a short
// chat (its headers, a credential, ~500 bytes of messages), and the ~300-byte answer the
// upstream nginx gives. One definition for bench/run.ts, the nginx upstream and
// bench/ab-dataplane.sh (which reads it from dist-bench/ with `node ... wrk-lua`).

import { pathToFileURL } from 'node:url';
import { wrkRequestLua } from './load.js';

export const AI_PATH = '/v1/chat/completions';
const AI_MESSAGES = '"messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly and precisely, in plain English."},' +
  '{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"The capital of France is Paris."},' +
  '{"role":"user","content":"And roughly how many people live there? One sentence, with the year of the figure you quote, please."}]';
export const AI_BODY = `{"model":"demo",${AI_MESSAGES},"temperature":0.7,"max_tokens":256,"top_p":1,"user":"bench-user-0042"}`;
/** The same request at sluice's root, where the body's model picks the deployment (`up-1`, the bench's upstream). */
export const AI_ROOT_BODY = AI_BODY.replace('"model":"demo"', '"model":"up-1"');
export const AI_SSE_BODY = `{"model":"demo",${AI_MESSAGES},"temperature":0.7,"max_tokens":256,"stream":true}`;
export const AI_HEADERS: Readonly<Record<string, string>> = {
  Authorization: 'Bearer sk-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH',
  Accept: 'application/json',
  'User-Agent': 'OpenAI/JS 5.23.2',
  'X-Stainless-Lang': 'js',
  'X-Stainless-Package-Version': '5.23.2',
  'X-Stainless-OS': 'Linux',
  'X-Stainless-Arch': 'x64',
  'X-Stainless-Runtime': 'node',
  'X-Stainless-Runtime-Version': 'v20.19.5',
  'X-Stainless-Retry-Count': '0',
  'X-Stainless-Timeout': '600',
};

/**
 * The answer of the AI request: an OpenAI chat.completion of about 300 bytes, as a small
 * model's reply to a short question.
 */
export const CHAT_COMPLETION = '{"id":"chatcmpl-9bench0000000000000000000001","object":"chat.completion","created":1733400000,"model":"demo",' +
  '"choices":[{"index":0,"message":{"role":"assistant","content":"Paris had about 2.1 million inhabitants in 2023, and the wider metropolitan area about 13 million."},' +
  '"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":61,"completion_tokens":24,"total_tokens":85},"system_fingerprint":"fp_bench"}';

// `node dist-bench/lib/ai-request.js wrk-lua | wrk-lua-root | chat-completion`: the pieces a shell script needs.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const what = process.argv[2];
  if (what === 'wrk-lua') process.stdout.write(wrkRequestLua({ method: 'POST', body: AI_BODY, headers: AI_HEADERS }));
  else if (what === 'wrk-lua-root') process.stdout.write(wrkRequestLua({ method: 'POST', body: AI_ROOT_BODY, headers: AI_HEADERS }));
  else if (what === 'chat-completion') process.stdout.write(CHAT_COMPLETION);
  else {
    process.stderr.write('usage: ai-request.js wrk-lua | wrk-lua-root | chat-completion\n');
    process.exitCode = 2;
  }
}
