// The OpenAI-compatible API as Ollama serves it (protocols.md B2.10): `stream` defaults to
// false, SSE events `data: <json>\n\n` ending with `data: [DONE]\n\n`, the ≥ v0.32.6 chat
// chunk format (role on the first chunk only, one `created`, a separate finish chunk),
// and errors as `{"error":{"message","type","param":null,"code":null}}`.

import { randomBytes } from 'node:crypto';
import { decodeGoJson, type GoFields, isObject, readBody } from './body.js';
import { unixSeconds } from './clock.js';
import type { Handler, Route, SimContext } from './context.js';
import { contentWords, countWords, embedding, embeddingDims, tokenText } from './fake.js';
import { type Exchange, JSON_PLAIN, send, sendJson, sendOpenAIError, SSE } from './http.js';
import { afterDelay, Generation, planTokens, type TokenSink } from './stream.js';

type Body = Record<string, unknown>;

const FINGERPRINT = 'fp_ollama';

/** Ollama's ids are `chatcmpl-<rand.Intn(999)>`: short and deliberately not unique. */
function shortId(): number {
  return Math.floor(Math.random() * 999);
}

/** The middleware's binding step: errors keep Go's text, EOF included. */
function decode(ex: Exchange, body: Buffer, goType: string, fields: GoFields): Body | null {
  const d = decodeGoJson(body, goType, fields);
  if (d.ok) return d.value;
  sendOpenAIError(ex.res, 400, d.error);
  return null;
}

function usage(promptTokens: number, completionTokens: number): Body {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

function usageJson(promptTokens: number, completionTokens: number): string {
  return `{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},"total_tokens":${promptTokens + completionTokens}}`;
}

function streamHead(res: Exchange['res']): void {
  if (!res.headersSent) res.writeHead(200, { 'content-type': SSE });
}

function maxTokens(req: Body): unknown {
  return req.max_tokens ?? req.max_completion_tokens;
}

function includeUsage(req: Body): boolean {
  return isObject(req.stream_options) && req.stream_options.include_usage === true;
}

/**
 * A model that can answer: an empty name is 400, an unknown one 404 (both OpenAI-style
 * errors with a `param`); undefined when the error has been sent.
 */
function openAIModel(sim: SimContext, ex: Exchange, name: string, required: boolean): string | undefined {
  if (required && name === '') {
    sendOpenAIError(ex.res, 400, 'model is required', true);
    return undefined;
  }
  if (sim.models.resolve(name) === undefined) {
    sendOpenAIError(ex.res, 404, `model '${name}' not found`, true);
    return undefined;
  }
  return name;
}

/** What the chat and completion sinks both keep per request. */
abstract class OpenAISink implements TokenSink {
  protected readonly res: Exchange['res'];
  protected readonly id: string;
  protected readonly model: string;
  protected readonly stream: boolean;
  protected readonly includeUsage: boolean;
  /** The whole text, for a non-streamed answer. */
  protected text = '';

  constructor(ex: Exchange, idPrefix: string, model: string, stream: boolean, withUsage: boolean) {
    this.res = ex.res;
    this.id = `${idPrefix}-${shortId()}`;
    this.model = model;
    this.stream = stream;
    this.includeUsage = withUsage;
  }

  abstract token(gen: Generation, index: number): boolean;
  abstract finish(gen: Generation): void;
}

// ---------------------------------------------------------------------------------------
// /v1/chat/completions

class ChatSink extends OpenAISink {
  readonly #created: number;
  /** Everything in a chunk before the choice object, built once per request. */
  readonly #prefix: string;

  constructor(ex: Exchange, model: string, stream: boolean, withUsage: boolean) {
    super(ex, 'chatcmpl', model, stream, withUsage);
    this.#created = unixSeconds();
    this.#prefix = `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.#created},"model":${JSON.stringify(model)},"system_fingerprint":"${FINGERPRINT}","choices":`;
  }

  token(_gen: Generation, index: number): boolean {
    const text = tokenText(index);
    if (!this.stream) {
      this.text += text;
      return true;
    }
    streamHead(this.res);
    const delta = index === 0 ? `{"role":"assistant","content":"${text}"}` : `{"content":"${text}"}`;
    return this.res.write(`${this.#prefix}[{"index":0,"delta":${delta},"finish_reason":null}]}\n\n`);
  }

  finish(gen: Generation): void {
    const res = this.res;
    if (!this.stream) {
      // The compat layer writes with json.Encoder: plain application/json and a newline.
      const body = {
        id: this.id, object: 'chat.completion', created: this.#created, model: this.model, system_fingerprint: FINGERPRINT,
        choices: [{ index: 0, message: { role: 'assistant', content: this.text }, finish_reason: gen.reason }],
        usage: usage(gen.promptTokens, gen.tokensSent),
      };
      send(res, 200, JSON_PLAIN, JSON.stringify(body) + '\n');
      return;
    }
    streamHead(res);
    let tail = `${this.#prefix}[{"index":0,"delta":{},"finish_reason":"${gen.reason}"}]}\n\n`;
    if (this.includeUsage) tail += `${this.#prefix}[],"usage":${usageJson(gen.promptTokens, gen.tokensSent)}}\n\n`;
    res.end(tail + 'data: [DONE]\n\n');
  }
}

const CHAT_FIELDS = {
  model: 'string', messages: 'array', stream: 'bool', stream_options: 'object', max_tokens: 'number',
  max_completion_tokens: 'number', tools: 'array',
} as const;

function onChatBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'openai.ChatCompletionRequest', CHAT_FIELDS);
  if (req === null) return;
  const messages = Array.isArray(req.messages) ? req.messages : [];
  if (messages.length === 0) {
    sendOpenAIError(ex.res, 400, "[] is too short - 'messages'");
    return;
  }
  let promptTokens = 0;
  for (const m of messages) if (isObject(m)) promptTokens += contentWords(m.content);
  const name = openAIModel(sim, ex, typeof req.model === 'string' ? req.model : '', true);
  if (name === undefined) return;
  const sink = new ChatSink(ex, name, req.stream === true, includeUsage(req));
  new Generation(sim, ex, sink, planTokens(sim.tunables.tokens, maxTokens(req), req.stop), Math.max(1, promptTokens)).start();
}

// ---------------------------------------------------------------------------------------
// /v1/completions

class CompletionSink extends OpenAISink {
  readonly #modelJson: string;

  constructor(ex: Exchange, model: string, stream: boolean, withUsage: boolean) {
    super(ex, 'cmpl', model, stream, withUsage);
    this.#modelJson = JSON.stringify(model);
  }

  /** Completion chunks carry their own `created`, unlike chat chunks. */
  #chunk(choices: string, usageJsonText: string | null): string {
    const u = usageJsonText === null ? '' : `,"usage":${usageJsonText}`;
    return `data: {"id":"${this.id}","object":"text_completion","created":${unixSeconds()},"model":${this.#modelJson},"system_fingerprint":"${FINGERPRINT}","choices":${choices}${u}}\n\n`;
  }

  token(_gen: Generation, index: number): boolean {
    const text = tokenText(index);
    if (!this.stream) {
      this.text += text;
      return true;
    }
    streamHead(this.res);
    // Quirk kept from Ollama: with include_usage every content chunk has a zero usage.
    const zero = this.includeUsage ? usageJson(0, 0) : null;
    return this.res.write(this.#chunk(`[{"text":"${text}","index":0,"finish_reason":null}]`, zero));
  }

  finish(gen: Generation): void {
    const res = this.res;
    if (!this.stream) {
      const body = {
        id: this.id, object: 'text_completion', created: unixSeconds(), model: this.model, system_fingerprint: FINGERPRINT,
        choices: [{ text: this.text, index: 0, finish_reason: gen.reason }],
        usage: usage(gen.promptTokens, gen.tokensSent),
      };
      send(res, 200, JSON_PLAIN, JSON.stringify(body) + '\n');
      return;
    }
    streamHead(res);
    const zero = this.includeUsage ? usageJson(0, 0) : null;
    let tail = this.#chunk(`[{"text":"","index":0,"finish_reason":"${gen.reason}"}]`, zero);
    if (this.includeUsage) tail += this.#chunk('[]', usageJson(gen.promptTokens, gen.tokensSent));
    res.end(tail + 'data: [DONE]\n\n');
  }
}

const COMPLETION_FIELDS = {
  model: 'string', prompt: 'string', stream: 'bool', stream_options: 'object', max_tokens: 'number', suffix: 'string',
} as const;

function onCompletionBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'openai.CompletionRequest', COMPLETION_FIELDS);
  if (req === null) return;
  const name = openAIModel(sim, ex, typeof req.model === 'string' ? req.model : '', false);
  if (name === undefined) return;
  const prompt = typeof req.prompt === 'string' ? req.prompt : '';
  const sink = new CompletionSink(ex, name, req.stream === true, includeUsage(req));
  new Generation(sim, ex, sink, planTokens(sim.tunables.tokens, req.max_tokens, req.stop), Math.max(1, countWords(prompt))).start();
}

// ---------------------------------------------------------------------------------------
// /v1/responses, as api.openai.com serves it (protocols.md does not cover it; the shapes
// are the official `openai` client's types, ResponseStreamEvent and Response): a text
// answer as one message item; streamed as named SSE events (`event: <type>`, a
// `sequence_number` in each), ending with response.completed (or response.incomplete at
// max_output_tokens) and no `[DONE]`.

/** The fields of a Response the simulator fills (the rest of the type are optional). */
interface ResponseObject extends Body {
  readonly status: string;
  readonly output: Body[];
}

class ResponsesSink implements TokenSink {
  readonly #res: Exchange['res'];
  readonly #stream: boolean;
  readonly #id: string;
  readonly #itemId: string;
  readonly #createdAt: number;
  readonly #model: string;
  readonly #instructions: string | null;
  readonly #maxOutputTokens: number | null;
  #text = '';
  #sequence = 0;

  constructor(ex: Exchange, model: string, stream: boolean, instructions: string | null, maxOutputTokens: number | null) {
    this.#res = ex.res;
    this.#stream = stream;
    const hex = randomBytes(24).toString('hex');
    this.#id = `resp_${hex}`;
    this.#itemId = `msg_${hex.slice(0, 40)}`;
    this.#createdAt = unixSeconds();
    this.#model = model;
    this.#instructions = instructions;
    this.#maxOutputTokens = maxOutputTokens;
  }

  token(_gen: Generation, index: number): boolean {
    const text = tokenText(index);
    this.#text += text;
    if (!this.#stream) return true;
    let out = '';
    if (index === 0) out = this.#opening();
    out += this.#event('response.output_text.delta', { item_id: this.#itemId, output_index: 0, content_index: 0, delta: text, logprobs: [] });
    return this.#res.write(out);
  }

  finish(gen: Generation): void {
    const done = this.#response(gen);
    if (!this.#stream) {
      send(this.#res, 200, JSON_PLAIN, JSON.stringify(done));
      return;
    }
    streamHead(this.#res);
    const part = { type: 'output_text', text: this.#text, annotations: [] };
    let out = gen.tokensSent === 0 ? this.#opening() : '';
    out += this.#event('response.output_text.done', { item_id: this.#itemId, output_index: 0, content_index: 0, text: this.#text, logprobs: [] });
    out += this.#event('response.content_part.done', { item_id: this.#itemId, output_index: 0, content_index: 0, part });
    out += this.#event('response.output_item.done', { output_index: 0, item: done.output[0] });
    out += this.#event(done.status === 'completed' ? 'response.completed' : 'response.incomplete', { response: done });
    this.#res.end(out);
  }

  /** The events before the first delta: the response, its message item, its text part. */
  #opening(): string {
    streamHead(this.#res);
    const pending = this.#shape('in_progress', [], null, null);
    return this.#event('response.created', { response: pending }) +
      this.#event('response.in_progress', { response: pending }) +
      this.#event('response.output_item.added', { output_index: 0, item: { id: this.#itemId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } }) +
      this.#event('response.content_part.added', { item_id: this.#itemId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
  }

  #event(type: string, fields: Body): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.#sequence++, ...fields })}\n\n`;
  }

  #response(gen: Generation): ResponseObject {
    const complete = gen.reason === 'stop';
    const message = {
      id: this.#itemId, type: 'message', status: complete ? 'completed' : 'incomplete', role: 'assistant',
      content: [{ type: 'output_text', text: this.#text, annotations: [] }],
    };
    const usage = {
      input_tokens: gen.promptTokens, input_tokens_details: { cached_tokens: 0 },
      output_tokens: gen.tokensSent, output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: gen.promptTokens + gen.tokensSent,
    };
    return this.#shape(complete ? 'completed' : 'incomplete', [message], complete ? null : { reason: 'max_output_tokens' }, usage);
  }

  #shape(status: string, output: Body[], incomplete: Body | null, usage: Body | null): ResponseObject {
    return {
      id: this.#id, object: 'response', created_at: this.#createdAt, status, error: null, incomplete_details: incomplete,
      instructions: this.#instructions, max_output_tokens: this.#maxOutputTokens, model: this.#model, output,
      parallel_tool_calls: true, previous_response_id: null, reasoning: { effort: null, summary: null }, store: false,
      temperature: 1, text: { format: { type: 'text' } }, tool_choice: 'auto', tools: [], top_p: 1, truncation: 'disabled',
      usage, user: null, metadata: {},
    };
  }
}

const RESPONSES_FIELDS = { model: 'string', stream: 'bool', instructions: 'string', max_output_tokens: 'number' } as const;

function onResponsesBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'openai.ResponsesRequest', RESPONSES_FIELDS);
  if (req === null) return;
  // `input`: a text, or a list of messages (content a text or `input_text` parts).
  const input = req.input;
  let promptTokens = 0;
  if (typeof input === 'string') {
    promptTokens = countWords(input);
  } else if (Array.isArray(input)) {
    for (const item of input) if (isObject(item)) promptTokens += contentWords(item.content);
  } else {
    sendOpenAIError(ex.res, 400, "Missing required parameter: 'input'.", true);
    return;
  }
  const instructions = typeof req.instructions === 'string' ? req.instructions : null;
  if (instructions !== null) promptTokens += countWords(instructions);
  const name = openAIModel(sim, ex, typeof req.model === 'string' ? req.model : '', true);
  if (name === undefined) return;
  const limit = typeof req.max_output_tokens === 'number' ? req.max_output_tokens : null;
  const sink = new ResponsesSink(ex, name, req.stream === true, instructions, limit);
  new Generation(sim, ex, sink, planTokens(sim.tunables.tokens, limit), Math.max(1, promptTokens)).start();
}

// ---------------------------------------------------------------------------------------
// /v1/embeddings

function float32Base64(v: readonly number[]): string {
  const f = new Float32Array(v);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

function onEmbeddingsBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'openai.EmbedRequest', { model: 'string', encoding_format: 'string', dimensions: 'number' });
  if (req === null) return;
  let input = req.input;
  if (input === '') input = [''];
  if (input === undefined || input === null || (Array.isArray(input) && input.length === 0)) {
    sendOpenAIError(ex.res, 400, 'invalid input');
    return;
  }
  const format = req.encoding_format;
  if (format !== undefined && format !== null && format !== '' && format !== 'float' && format !== 'base64') {
    sendOpenAIError(ex.res, 400, `invalid encoding_format: ${String(format)}`);
    return;
  }
  const inputs = typeof input === 'string' ? [input] : Array.isArray(input) ? input : null;
  if (inputs === null || inputs.some((v) => typeof v !== 'string')) {
    sendOpenAIError(ex.res, 400, 'invalid input type', true);
    return;
  }
  const name = typeof req.model === 'string' ? req.model : '';
  if (sim.models.resolve(name) === undefined) {
    sendOpenAIError(ex.res, 404, `model ${JSON.stringify(name)} not found, try pulling it first`, true);
    return;
  }
  const dims = embeddingDims(req.dimensions);
  const base64 = format === 'base64';
  afterDelay(ex, sim.tunables.ttftMs, (e) => {
    let words = 0;
    const data = (inputs as string[]).map((text, index) => {
      words += Math.max(1, countWords(text));
      const v = embedding(text, dims, true);
      return { object: 'embedding', embedding: base64 ? float32Base64(v) : v, index };
    });
    sendJson(e.res, 200, { object: 'list', data, model: name, usage: { prompt_tokens: words, total_tokens: words } });
  });
}

// ---------------------------------------------------------------------------------------
// /v1/models

const listModels: Handler = (sim, ex) => {
  sendJson(ex.res, 200, {
    object: 'list',
    data: sim.models.list.map((m) => ({ id: m.name, object: 'model', created: m.created, owned_by: 'library' })),
  });
};

const MODELS_PREFIX = '/v1/models/';

/** `GET /v1/models/{model}`: echoes the id as requested. */
export function getModel(sim: SimContext, ex: Exchange): void {
  let id = ex.path.slice(MODELS_PREFIX.length);
  try {
    id = decodeURIComponent(id);
  } catch {
    // Keep the raw text: a malformed escape is just an unknown model.
  }
  const model = sim.models.resolve(id);
  if (model === undefined) {
    sendOpenAIError(ex.res, 404, `model '${id}' not found`, true);
    return;
  }
  sendJson(ex.res, 200, { id, object: 'model', created: model.created, owned_by: 'library' });
}

export function isModelPath(path: string): boolean {
  return path.length > MODELS_PREFIX.length && path.startsWith(MODELS_PREFIX);
}

const chatCompletions: Handler = (sim, ex) => readBody(sim, ex, onChatBody);
const completions: Handler = (sim, ex) => readBody(sim, ex, onCompletionBody);
const embeddings: Handler = (sim, ex) => readBody(sim, ex, onEmbeddingsBody);
const responses: Handler = (sim, ex) => readBody(sim, ex, onResponsesBody);

export const MODEL_ROUTE: Route = Object.freeze({ methods: { GET: getModel }, generation: false, style: 'openai' });

export function openaiRoutes(): Map<string, Route> {
  const gen = (h: Handler): Route => ({ methods: { POST: h }, generation: true, style: 'openai' });
  return new Map<string, Route>([
    ['/v1/chat/completions', gen(chatCompletions)],
    ['/v1/completions', gen(completions)],
    ['/v1/embeddings', gen(embeddings)],
    ['/v1/responses', gen(responses)],
    ['/v1/models', { methods: { GET: listModels }, generation: false, style: 'openai' }],
  ]);
}

/** What api.openai.com answers for an unknown URL or method (`--protocol openai`). */
export function openaiNotFound(ex: Exchange, methodNotAllowed: boolean): void {
  const what = `(${ex.req.method ?? 'GET'} ${ex.path})`;
  const message = methodNotAllowed ? `Invalid method for URL ${what}` : `Invalid URL ${what}`;
  const body = { error: { message, type: 'invalid_request_error', param: null, code: null } };
  sendJson(ex.res, methodNotAllowed ? 405 : 404, body, JSON_PLAIN);
}
