// Ollama's native API (protocols.md part B): NDJSON streams by default, `stream:false`
// gives one JSON object, metrics in nanoseconds on the final `done:true` chunk, and the
// error texts and statuses of Ollama's handlers.

import { performance } from 'node:perf_hooks';
import { decodeGoJson, type GoFields, isObject, readBody } from './body.js';
import { createdAt, msToNs } from './clock.js';
import type { Handler, Route, SimContext } from './context.js';
import { contentWords, countWords, DEFAULT_EMBEDDING_DIMS, embedding, embeddingDims, tokenText } from './fake.js';
import { type Exchange, JSON_UTF8, NDJSON, send, sendJson, sendOllamaError, TEXT_UTF8 } from './http.js';
import { MODEL_DETAILS, type SimModel } from './models.js';
import { afterDelay, Generation, planTokens, type TokenSink } from './stream.js';

/** The version `/api/version` reports: recent enough for the ≥ v0.32.6 OpenAI stream format. */
export const OLLAMA_VERSION = '0.32.15';

const DEFAULT_KEEP_ALIVE_MS = 5 * 60 * 1000;
// A negative keep_alive means "forever": Go's MaxInt64 nanoseconds, about 292 years.
const FOREVER_MS = 292 * 365.25 * 24 * 3600 * 1000;

type Body = Record<string, unknown>;

/** The handlers' binding step; an empty body is `missing request body`, not Go's EOF. */
function decode(ex: Exchange, body: Buffer, goType: string, fields: GoFields): Body | null {
  const d = decodeGoJson(body, goType, fields);
  if (d.ok) return d.value;
  sendOllamaError(ex.res, 400, d.eof ? 'missing request body' : d.error);
  return null;
}

const DURATION_PART = /^(\d+\.?\d*|\.\d+)([^\d.]*)/;
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};

/** Go's time.ParseDuration, in ms; a string is an error text. */
function parseGoDuration(orig: string): number | string {
  let s = orig;
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-');
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return `time: invalid duration "${orig}"`;
  let total = 0;
  while (s !== '') {
    const m = DURATION_PART.exec(s);
    if (m === null) return `time: invalid duration "${orig}"`;
    const unit = m[2]!;
    if (unit === '') return `time: missing unit in duration "${orig}"`;
    const scale = DURATION_UNITS[unit];
    if (scale === undefined) return `time: unknown unit "${unit}" in duration "${orig}"`;
    total += Number(m[1]) * scale;
    s = s.slice(m[0].length);
  }
  return negative ? -total : total;
}

/**
 * api.Duration's UnmarshalJSON: seconds as a number, a Go duration string, negative means
 * forever. Returns ms, undefined when absent, or an error text (a 400).
 */
export function keepAliveMs(value: unknown): number | undefined | { error: string } {
  if (value === undefined || value === null) return undefined;
  let ms: number;
  if (typeof value === 'number') ms = value * 1000;
  else if (typeof value === 'string') {
    const d = parseGoDuration(value);
    if (typeof d === 'string') return { error: d };
    ms = d;
  } else {
    const goType = typeof value === 'boolean' ? 'bool' : Array.isArray(value) ? '[]interface {}' : 'map[string]interface {}';
    return { error: `Unsupported type: '${goType}'` };
  }
  return ms < 0 ? FOREVER_MS : ms;
}

/** An empty prompt or message list only loads the model, or with keep_alive 0 unloads it. */
function loadOrUnload(sim: SimContext, model: SimModel, keepAlive: number | undefined): 'load' | 'unload' {
  if (keepAlive === 0) {
    sim.loaded.delete(model.name);
    return 'unload';
  }
  markLoaded(sim, model, keepAlive);
  return 'load';
}

function markLoaded(sim: SimContext, model: SimModel, keepAlive: number | undefined): void {
  sim.loaded.set(model.name, Date.now() + Math.min(keepAlive ?? DEFAULT_KEEP_ALIVE_MS, FOREVER_MS));
}

function topLogprobsError(ex: Exchange, value: unknown): boolean {
  if (typeof value === 'number' && (value < 0 || value > 20)) {
    sendOllamaError(ex.res, 400, 'top_logprobs must be between 0 and 20');
    return true;
  }
  return false;
}

function numPredict(options: unknown): unknown {
  return isObject(options) ? options.num_predict : undefined;
}

function stopOption(options: unknown): unknown {
  return isObject(options) ? options.stop : undefined;
}

function keepAliveError(ex: Exchange, keepAlive: ReturnType<typeof keepAliveMs>): keepAlive is { error: string } {
  if (typeof keepAlive === 'object') {
    sendOllamaError(ex.res, 400, keepAlive.error);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Token sink for /api/generate and /api/chat.

class OllamaSink implements TokenSink {
  readonly #res: Exchange['res'];
  readonly #model: string;
  readonly #modelJson: string;
  readonly #chat: boolean;
  readonly #stream: boolean;
  readonly #context: boolean;
  #text = '';

  constructor(ex: Exchange, model: string, chat: boolean, stream: boolean, context: boolean) {
    this.#res = ex.res;
    this.#model = model;
    this.#modelJson = JSON.stringify(model);
    this.#chat = chat;
    this.#stream = stream;
    this.#context = context;
  }

  token(_gen: Generation, index: number): boolean {
    const text = tokenText(index);
    if (!this.#stream) {
      this.#text += text;
      return true;
    }
    const res = this.#res;
    // Ollama sends headers with the first chunk, so time to first byte includes ttft.
    if (!res.headersSent) res.writeHead(200, { 'content-type': NDJSON });
    // Token text is plain ASCII, so the line is built without JSON.stringify.
    return res.write(
      this.#chat
        ? `{"model":${this.#modelJson},"created_at":"${createdAt()}","message":{"role":"assistant","content":"${text}"},"done":false}\n`
        : `{"model":${this.#modelJson},"created_at":"${createdAt()}","response":"${text}","done":false}\n`,
    );
  }

  finish(gen: Generation): void {
    const res = this.#res;
    const final: Body = { model: this.#model, created_at: createdAt() };
    if (this.#chat) {
      final.message = { role: 'assistant', content: this.#text };
      final.done_reason = gen.reason;
      final.done = true;
    } else {
      final.response = this.#text;
      final.done = true;
      final.done_reason = gen.reason;
      if (this.#context) {
        const n = gen.promptTokens + gen.tokensSent;
        const ctx = new Array<number>(n);
        for (let i = 0; i < n; i++) ctx[i] = i + 1;
        final.context = ctx;
      }
    }
    addMetrics(final, gen);
    if (this.#stream) {
      if (!res.headersSent) res.writeHead(200, { 'content-type': NDJSON });
      res.end(JSON.stringify(final) + '\n');
    } else {
      send(res, 200, JSON_UTF8, JSON.stringify(final));
    }
  }
}

/** Ollama's Metrics: nanoseconds, `omitempty`, only on the final chunk. */
function addMetrics(o: Body, gen: Generation): void {
  const end = performance.now();
  const started = gen.ex.startedAt;
  o.total_duration = msToNs(end - started);
  o.load_duration = msToNs(gen.beganAt - started);
  if (gen.promptTokens > 0) {
    o.prompt_eval_count = gen.promptTokens;
    o.prompt_eval_duration = msToNs((gen.tokensSent > 0 ? gen.firstTokenAt : end) - gen.beganAt);
  }
  if (gen.tokensSent > 0) {
    o.eval_count = gen.tokensSent;
    o.eval_duration = msToNs(gen.lastTokenAt - gen.firstTokenAt);
  }
}

// ---------------------------------------------------------------------------------------
// Handlers.

const GENERATE_FIELDS = {
  model: 'string', prompt: 'string', suffix: 'string', system: 'string', template: 'string',
  context: 'array', stream: 'bool', raw: 'bool', options: 'object', images: 'array', top_logprobs: 'number',
} as const;

/** The model a generate or chat request names; undefined once its 404 has been sent. */
function generationModel(sim: SimContext, ex: Exchange, name: string): SimModel | undefined {
  const model = sim.models.resolve(name);
  if (model === undefined) sendOllamaError(ex.res, 404, `model '${name}' not found`);
  return model;
}

function onGenerateBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'api.GenerateRequest', GENERATE_FIELDS);
  if (req === null) return;
  const keepAlive = keepAliveMs(req.keep_alive);
  if (keepAliveError(ex, keepAlive)) return;
  if (topLogprobsError(ex, req.top_logprobs)) return;
  const name = typeof req.model === 'string' ? req.model : '';
  const model = generationModel(sim, ex, name);
  if (model === undefined) return;
  const prompt = typeof req.prompt === 'string' ? req.prompt : '';
  if (prompt === '') {
    // Empty prompt only loads (or, with keep_alive 0, unloads) the model: one JSON object
    // even when streaming was asked for.
    sendJson(ex.res, 200, {
      model: name, created_at: createdAt(), response: '', done: true, done_reason: loadOrUnload(sim, model, keepAlive),
    });
    return;
  }
  const rawMode = req.raw === true;
  const context = Array.isArray(req.context) ? req.context : [];
  if (rawMode && ((typeof req.template === 'string' && req.template !== '') || (typeof req.system === 'string' && req.system !== '') || context.length > 0)) {
    sendOllamaError(ex.res, 400, 'raw mode does not support template, system, or context');
    return;
  }
  markLoaded(sim, model, keepAlive);
  const stream = req.stream !== false;
  const sink = new OllamaSink(ex, name, false, stream, !rawMode);
  const promptTokens = countWords(prompt) + (typeof req.system === 'string' ? countWords(req.system) : 0);
  new Generation(sim, ex, sink, planTokens(sim.tunables.tokens, numPredict(req.options), stopOption(req.options)), promptTokens).start();
}

const CHAT_FIELDS = {
  model: 'string', messages: 'array', stream: 'bool', options: 'object', tools: 'array', top_logprobs: 'number',
} as const;

function onChatBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'api.ChatRequest', CHAT_FIELDS);
  if (req === null) return;
  const keepAlive = keepAliveMs(req.keep_alive);
  if (keepAliveError(ex, keepAlive)) return;
  const messages = Array.isArray(req.messages) ? req.messages : [];
  let promptTokens = 0;
  for (const m of messages) {
    if (!isObject(m)) {
      sendOllamaError(ex.res, 400, `json: cannot unmarshal ${Array.isArray(m) ? 'array' : typeof m} into Go struct field ChatRequest.messages of type api.Message`);
      return;
    }
    promptTokens += contentWords(m.content);
  }
  if (topLogprobsError(ex, req.top_logprobs)) return;
  const name = typeof req.model === 'string' ? req.model : '';
  if (name === '') {
    sendOllamaError(ex.res, 400, 'model is required');
    return;
  }
  const model = generationModel(sim, ex, name);
  if (model === undefined) return;
  if (messages.length === 0) {
    sendJson(ex.res, 200, {
      model: name, created_at: createdAt(), message: { role: 'assistant', content: '' }, done_reason: loadOrUnload(sim, model, keepAlive), done: true,
    });
    return;
  }
  markLoaded(sim, model, keepAlive);
  const sink = new OllamaSink(ex, name, true, req.stream !== false, false);
  new Generation(sim, ex, sink, planTokens(sim.tunables.tokens, numPredict(req.options), stopOption(req.options)), Math.max(1, promptTokens)).start();
}

function embedModel(sim: SimContext, ex: Exchange, name: string): SimModel | undefined {
  if (name === '') {
    sendOllamaError(ex.res, 400, 'model is required');
    return undefined;
  }
  const model = sim.models.resolve(name);
  // The embed handlers report a scheduler error here, hence Go's %q quoting.
  if (model === undefined) sendOllamaError(ex.res, 404, `model ${JSON.stringify(name)} not found, try pulling it first`);
  return model;
}

const EMBED_FIELDS = { model: 'string', truncate: 'bool', dimensions: 'number', options: 'object' } as const;

function onEmbedBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'api.EmbedRequest', EMBED_FIELDS);
  if (req === null) return;
  const keepAlive = keepAliveMs(req.keep_alive);
  if (keepAliveError(ex, keepAlive)) return;
  const inputs: string[] = [];
  const input = req.input;
  if (typeof input === 'string') {
    if (input !== '') inputs.push(input);
  } else if (Array.isArray(input)) {
    for (const v of input) {
      if (typeof v !== 'string') {
        sendOllamaError(ex.res, 400, 'invalid input type');
        return;
      }
      inputs.push(v);
    }
  } else if (input !== undefined && input !== null) {
    sendOllamaError(ex.res, 400, 'invalid input type');
    return;
  }
  const name = typeof req.model === 'string' ? req.model : '';
  const model = embedModel(sim, ex, name);
  if (model === undefined) return;
  markLoaded(sim, model, keepAlive);
  if (inputs.length === 0) {
    sendJson(ex.res, 200, { model: name, embeddings: [] });
    return;
  }
  const dims = embeddingDims(req.dimensions);
  afterDelay(ex, sim.tunables.ttftMs, (e) => {
    let words = 0;
    const embeddings = inputs.map((text) => {
      words += Math.max(1, countWords(text));
      return embedding(text, dims, true);
    });
    const end = performance.now();
    sendJson(e.res, 200, {
      model: name,
      embeddings,
      total_duration: msToNs(end - e.startedAt),
      load_duration: msToNs(0.001),
      prompt_eval_count: words,
    });
  });
}

const EMBEDDINGS_FIELDS = { model: 'string', prompt: 'string', options: 'object' } as const;

function onEmbeddingsBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'api.EmbeddingRequest', EMBEDDINGS_FIELDS);
  if (req === null) return;
  const keepAlive = keepAliveMs(req.keep_alive);
  if (keepAliveError(ex, keepAlive)) return;
  const name = typeof req.model === 'string' ? req.model : '';
  const model = embedModel(sim, ex, name);
  if (model === undefined) return;
  markLoaded(sim, model, keepAlive);
  const prompt = typeof req.prompt === 'string' ? req.prompt : '';
  if (prompt === '') {
    sendJson(ex.res, 200, { embedding: [] });
    return;
  }
  afterDelay(ex, sim.tunables.ttftMs, (e) => {
    // The legacy handler returns the runner's float64 vector without normalising it.
    const v = embedding(prompt, DEFAULT_EMBEDDING_DIMS, false);
    for (let i = 0; i < v.length; i++) v[i] = v[i]! * 3;
    sendJson(e.res, 200, { embedding: v });
  });
}

function onShowBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  const req = decode(ex, raw, 'api.ShowRequest', { model: 'string', name: 'string', verbose: 'bool' });
  if (req === null) return;
  const name = typeof req.model === 'string' && req.model !== '' ? req.model : typeof req.name === 'string' ? req.name : '';
  if (name === '') {
    sendOllamaError(ex.res, 400, 'model is required');
    return;
  }
  const model = sim.models.resolve(name);
  if (model === undefined) {
    sendOllamaError(ex.res, 404, `model '${name}' not found`);
    return;
  }
  sendJson(ex.res, 200, {
    license: '',
    modelfile: `# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM ${model.name}\n\nFROM ${model.name}\nTEMPLATE {{ .Prompt }}\n`,
    parameters: '',
    template: '{{ .Prompt }}',
    details: MODEL_DETAILS,
    model_info: {
      'general.architecture': 'llama',
      'general.parameter_count': 1_000_000_000,
      'llama.context_length': 4096,
      'llama.embedding_length': DEFAULT_EMBEDDING_DIMS,
    },
    capabilities: ['completion'],
    modified_at: model.modifiedAt,
  });
}

const root: Handler = (_sim, ex) => send(ex.res, 200, TEXT_UTF8, 'Ollama is running');
const version: Handler = (_sim, ex) => sendJson(ex.res, 200, { version: OLLAMA_VERSION });

const tags: Handler = (sim, ex) => {
  sendJson(ex.res, 200, {
    models: sim.models.list.map((m) => ({
      name: m.name, model: m.name, modified_at: m.modifiedAt, size: m.size, digest: m.digest, details: MODEL_DETAILS,
    })),
  });
};

const ps: Handler = (sim, ex) => {
  const now = Date.now();
  const models: Body[] = [];
  for (const m of sim.models.list) {
    const expires = sim.loaded.get(m.name);
    if (expires === undefined || expires <= now) continue;
    models.push({
      name: m.name, model: m.name, size: m.size, digest: m.digest, details: MODEL_DETAILS,
      expires_at: new Date(expires).toISOString(), size_vram: m.size, context_length: 4096,
    });
  }
  models.sort((a, b) => (a.expires_at as string) < (b.expires_at as string) ? 1 : -1);
  sendJson(ex.res, 200, { models });
};

const generate: Handler = (sim, ex) => readBody(sim, ex, onGenerateBody);
const chat: Handler = (sim, ex) => readBody(sim, ex, onChatBody);
const embed: Handler = (sim, ex) => readBody(sim, ex, onEmbedBody);
const embeddings: Handler = (sim, ex) => readBody(sim, ex, onEmbeddingsBody);
const show: Handler = (sim, ex) => readBody(sim, ex, onShowBody);

export function ollamaRoutes(): Map<string, Route> {
  const plain = (methods: Record<string, Handler>): Route => ({ methods, generation: false, style: 'ollama' });
  const gen = (h: Handler): Route => ({ methods: { POST: h }, generation: true, style: 'ollama' });
  return new Map<string, Route>([
    ['/', plain({ GET: root, HEAD: root })],
    ['/api/version', plain({ GET: version, HEAD: version })],
    ['/api/tags', plain({ GET: tags, HEAD: tags })],
    ['/api/ps', plain({ GET: ps })],
    ['/api/show', plain({ POST: show })],
    ['/api/generate', gen(generate)],
    ['/api/chat', gen(chat)],
    ['/api/embed', gen(embed)],
    ['/api/embeddings', gen(embeddings)],
  ]);
}

/** gin's defaults for an unknown path or a known path with the wrong method. */
export function ollamaNotFound(ex: Exchange, methodNotAllowed: boolean): void {
  if (methodNotAllowed) send(ex.res, 405, 'text/plain', '405 method not allowed');
  else send(ex.res, 404, 'text/plain', '404 page not found');
}
