// Token pacing shared by every generating endpoint (Ollama generate/chat, OpenAI chat and
// completions, streamed or not). A protocol module only formats: it hands a TokenSink to a
// Generation, which decides when each token is produced, pauses on backpressure, stops at
// once when the client goes away, and enforces `crash_after`.

import { performance } from 'node:perf_hooks';
import type { SimContext } from './context.js';
import { tokenText } from './fake.js';
import type { Exchange, Job } from './http.js';

export type FinishReason = 'stop' | 'length';

export interface TokenSink {
  /** Writes token `index`; returns false when the socket buffer is full. */
  token(gen: Generation, index: number): boolean;
  /** Ends the response: final chunk, usage, `[DONE]`, or the whole non-streamed body. */
  finish(gen: Generation): void;
}

export interface TokenPlan {
  readonly count: number;
  readonly reason: FinishReason;
}

/**
 * `limit` is num_predict / max_tokens; only a positive limit below `tokens` applies.
 * `stop` (OpenAI's `stop`, Ollama's `options.stop`: a string or strings): the answer ends
 * with the last whole token before the first stop text, which is not sent, as real
 * servers stop.
 */
export function planTokens(tokens: number, limit: unknown, stop?: unknown): TokenPlan {
  const plan: TokenPlan = typeof limit === 'number' && limit > 0 && limit < tokens ? { count: Math.floor(limit) || 1, reason: 'length' } : { count: tokens, reason: 'stop' };
  const stops = (typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop : []).filter((s): s is string => typeof s === 'string' && s !== '');
  if (stops.length === 0) return plan;
  let text = '';
  for (let i = 0; i < plan.count; i++) {
    text += tokenText(i);
    const at = Math.min(...stops.map((s) => text.indexOf(s)).filter((k) => k >= 0));
    if (at === Infinity) continue;
    let count = 0;
    for (let end = tokenText(0).length; count < i && end <= at; end += tokenText(count).length) count++;
    return { count, reason: 'stop' };
  }
  return plan;
}

// setTimeout passes the generation as an argument, so a timer needs no closure.
function onTimer(gen: Generation): void {
  gen.pump();
}

export class Generation implements Job {
  readonly ex: Exchange;
  readonly count: number;
  readonly reason: FinishReason;
  readonly promptTokens: number;
  tokensSent = 0;
  /** performance.now() when generation began (request parsed and validated). */
  readonly beganAt: number;
  firstTokenAt = 0;
  lastTokenAt = 0;
  readonly #sim: SimContext;
  readonly #sink: TokenSink;
  readonly #ttftMs: number;
  readonly #tokenMs: number;
  readonly #crashAfter: number;
  #timer: NodeJS.Timeout | null = null;
  #timerMs = -1;
  #onDrain: (() => void) | null = null;
  #done = false;

  constructor(sim: SimContext, ex: Exchange, sink: TokenSink, plan: TokenPlan, promptTokens: number) {
    // One snapshot per request: a config change applies to the next request, not mid-stream.
    const t = sim.tunables;
    this.#sim = sim;
    this.ex = ex;
    this.#sink = sink;
    this.count = plan.count;
    this.reason = plan.reason;
    this.promptTokens = promptTokens;
    this.#ttftMs = t.ttftMs;
    this.#tokenMs = t.tokenMs;
    this.#crashAfter = t.crashAfter;
    this.beganAt = performance.now();
  }

  start(): void {
    this.ex.job = this;
    if (this.#ttftMs > 0) this.#schedule(this.#ttftMs);
    else this.pump();
  }

  /** Idempotent; called when the client goes away. Nothing is written afterwards. */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#onDrain !== null) this.ex.res.off('drain', this.#onDrain);
  }

  /** Produces tokens until a delay is due, the socket pushes back, or the response ends. */
  pump(): void {
    while (!this.#done) {
      if (this.tokensSent >= this.count) {
        this.#done = true;
        this.#sink.finish(this);
        return;
      }
      const i = this.tokensSent;
      const now = performance.now();
      if (i === 0) this.firstTokenAt = now;
      this.lastTokenAt = now;
      const writable = this.#sink.token(this, i);
      this.tokensSent = i + 1;
      if (this.#crashAfter > 0 && this.tokensSent >= this.#crashAfter) {
        this.abort();
        this.#sim.crash(this.ex, this.tokensSent);
        return;
      }
      if (!writable) {
        this.#onDrain ??= this.#resume.bind(this);
        this.ex.res.once('drain', this.#onDrain);
        return;
      }
      if (this.#tokenMs > 0 && this.tokensSent < this.count) {
        this.#schedule(this.#tokenMs);
        return;
      }
    }
  }

  #resume(): void {
    if (this.#done) return;
    if (this.#tokenMs > 0 && this.tokensSent < this.count) this.#schedule(this.#tokenMs);
    else this.pump();
  }

  #schedule(ms: number): void {
    // Re-arm the same Timeout object for every token instead of allocating one per token.
    if (this.#timer !== null && this.#timerMs === ms) this.#timer.refresh();
    else {
      this.#timer = setTimeout(onTimer, ms, this);
      this.#timerMs = ms;
    }
  }
}

function onDelay(d: Delay): void {
  d.fire();
}

/** A cancellable wait before a non-streamed answer (embeddings, MLflow, `/_sim/sleep`). */
export class Delay implements Job {
  readonly tokensSent = 0;
  readonly #ex: Exchange;
  readonly #then: (ex: Exchange) => void;
  readonly #timer: NodeJS.Timeout;
  #done = false;

  constructor(ex: Exchange, ms: number, then: (ex: Exchange) => void) {
    this.#ex = ex;
    this.#then = then;
    this.#timer = setTimeout(onDelay, ms, this);
  }

  fire(): void {
    if (this.#done) return;
    this.#done = true;
    this.#then(this.#ex);
  }

  abort(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
  }
}

/** Runs `then` after `ms` (synchronously when 0), unless the client goes away first. */
export function afterDelay(ex: Exchange, ms: number, then: (ex: Exchange) => void): void {
  if (ms <= 0) then(ex);
  else ex.job = new Delay(ex, ms, then);
}

/** A request that is accepted and never answered (`hang`); only the client can end it. */
export const HANG: Job = Object.freeze({ abort(): void {}, tokensSent: 0 });
