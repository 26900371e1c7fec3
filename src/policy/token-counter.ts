// Counts the LLM tokens of a response for tokens-per-minute limits, cost and the token
// metrics: the usage the server reports (OpenAI `usage.total_tokens`, Ollama
// `prompt_eval_count` + `eval_count`), or, when it reports none, one token per streamed event
// (an SSE `data:` line but `[DONE]`, an NDJSON line). An answer of Ollama's own API is read
// for its counts alone, the last of each (its final line, after the message): its tool
// calls' arguments are JSON objects, whose keys may be named as any of these.
// It runs on every response by default (config metrics.tokens), so it makes no string and
// no allocation per chunk: every key has an underscore before its end (`_tokens"`,
// `_count"`), a byte JSON answers hold few of, so a native search (memchr) goes from one to
// the next and only there are the bytes looked at; in a stream, a native one finds where
// lines end (a whole answer's events count for nothing: ~0.1 us a response, measured). A field
// split across two chunks is found by scanning the previous chunk's last bytes joined to
// the next one's first. A compressed answer's chunks are read as they decode (AnswerDecoder).

import { bytesAt, wordSkips } from '../json-scan.js';
import { AnswerDecoder } from './answer-decoder.js';

// Ollama's counts first: an answer of its own API reads those alone (OLLAMA_KEYS).
const EVAL = 0;
const PROMPT_EVAL = 1;
const TOTAL = 2;
const PROMPT = 3;
const COMPLETION = 4;
const INPUT = 5;
const OUTPUT = 6;
const KEYS = ['"eval_count"', '"prompt_eval_count"', '"total_tokens"', '"prompt_tokens"', '"completion_tokens"', '"input_tokens"', '"output_tokens"'].map((k) => Buffer.from(k, 'latin1'));
const OLLAMA_KEYS = 2;
/** Longer than a key, a colon, spaces and a number: a field split across chunks is whole in the tail plus the next chunk's start. */
const TAIL = 64;
// Where a split field is put back together: the previous chunk's tail, then the new chunk's start.
const seam = Buffer.alloc(TAIL * 2);
const TOKENS_END = Buffer.from('tokens"', 'latin1');
const COUNT_END = Buffer.from('count"', 'latin1');
const UNDERSCORE = 0x5f;
/** The last six bytes of each ending, for the pass that skips. */
const KEY_ENDS = wordSkips(['okens"', 'count"']);
/** Underscores closer than DENSE_GAP bytes apart on average, over DENSE_HITS of them: the pass that skips takes over. */
const DENSE_HITS = 8;
const DENSE_GAP = 40;
const QUOTE = 0x22;
const COLON = 0x3a;
const LF = 0x0a;
const CR = 0x0d;
const DATA = Buffer.from('data:', 'latin1');
const EVENT = Buffer.from('event:', 'latin1');
const ERROR_WORD = Buffer.from('error', 'latin1');
const ERROR_FIELD = Buffer.from('error:', 'latin1');
const FAILED_WORD = Buffer.from('response.failed', 'latin1');
const ERROR_KEY = Buffer.from('"error"', 'latin1');
const TYPE_KEY = Buffer.from('"type"', 'latin1');
const FAILED_VALUE = Buffer.from('"response.failed"', 'latin1');
const DONE = Buffer.from('[DONE]', 'latin1');
/** doneProgress: the whole of `data: [DONE]` seen; or a line that is not it. */
const DONE_LINE = DATA.length + DONE.length;
const NOT_DONE = -1;

export class TokenCounter {
  /** How many of KEYS are read: OLLAMA_KEYS for an answer of Ollama's own API. */
  readonly #keys: number;
  /** Ollama's own API: each count is the last one seen (its final line comes after any tool call). */
  readonly #lastWins: boolean;
  // The largest value seen per key (the last for #lastWins), -1 when none (one chunk may hold
  // several usages: Ollama's OpenAI compat layer sends a zero usage on every content chunk, the real one last).
  #total = -1;
  #eval = -1;
  #promptEval = -1;
  #prompt = -1;
  #completion = -1;
  #input = -1;
  #output = -1;
  /** The previous chunk's last bytes, when it ended inside a line (a field may continue). */
  #tail: Buffer | null = null;
  #tailLength = 0;
  #events = 0;
  /** The first character of the current line, begun in an earlier chunk; 0: none yet (SSE events end with a blank line). */
  #lineFirst = 0;
  /** How far the current line, begun in an earlier chunk, is `data: [DONE]` (doneProgress). */
  #lineDone = 0;
  /** A line of the stream said its server failed after the 200 head (reportsFailure). */
  #failed = false;
  /**
   * A compressed answer, whose usage is not in its bytes as sent: #decoder reads them
   * decoded; null for a coding it does not know, which counts as an answer without usage.
   */
  #coded = false;
  #codedStreamed = false;
  #decoder: AnswerDecoder | null = null;

  /** `ollamaApi`: the answer is of Ollama's own API (ollamaApi in genai-endpoints.ts), not OpenAI's or another. */
  constructor(ollamaApi = false) {
    this.#keys = ollamaApi ? OLLAMA_KEYS : KEYS.length;
    this.#lastWins = ollamaApi;
  }

  /**
   * The answer's content coding (contentCoding), before its first chunk: a client that
   * accepts gzip (the Python and JavaScript SDKs do) gets a provider's compressed answer.
   * The rare branch: most model servers do not compress.
   */
  encodedAs(coding: string): void {
    this.#coded = true;
    this.#decoder = AnswerDecoder.for(coding, (decoded) => this.#read(decoded, this.#codedStreamed));
  }

  /** `streamed`: the answer is an event stream (SSE, NDJSON), whose events are counted for when it reports no usage. */
  observe(chunk: Buffer, streamed: boolean): void {
    if (this.#coded) {
      this.#codedStreamed = streamed;
      this.#decoder?.write(chunk);
      return;
    }
    this.#read(chunk, streamed);
  }

  /** Reads the answer's next bytes as sent, or decoded. */
  #read(chunk: Buffer, streamed: boolean): void {
    const tailLength = this.#tailLength;
    if (tailLength > 0) {
      const head = Math.min(chunk.length, TAIL);
      this.#tail!.copy(seam, 0, 0, tailLength);
      chunk.copy(seam, tailLength, 0, head);
      // Fields that begin in the tail; those wholly in the chunk are found next.
      this.#scan(seam, tailLength + head, tailLength, false);
    }
    this.#scan(chunk, chunk.length, chunk.length, streamed);
    // A chunk whose last byte (spaces aside) closes an object or an array, or is a comma,
    // ends inside no field: nothing to carry over (the usual case: a whole JSON answer, an
    // SSE event, an NDJSON line). Spaces alone may sit inside a field: they are carried.
    let end = chunk.length - 1;
    while (end >= 0 && isSpace(chunk[end]!)) end--;
    const last = end < 0 ? QUOTE : chunk[end]!;
    if (last === 0x7d || last === 0x5d || last === 0x2c) {
      this.#tailLength = 0;
      return;
    }
    const tail = (this.#tail ??= Buffer.allocUnsafe(TAIL));
    if (chunk.length >= TAIL) {
      chunk.copy(tail, 0, chunk.length - TAIL);
      this.#tailLength = TAIL;
    } else {
      // A short chunk: after what is left of the previous tail.
      const keep = Math.min(tailLength, TAIL - chunk.length);
      tail.copy(tail, 0, tailLength - keep, tailLength);
      chunk.copy(tail, keep);
      this.#tailLength = keep + chunk.length;
    }
  }

  /** Reads the usage fields whose key starts before `startsBefore`; `events`: also counts the lines. */
  #scan(b: Buffer, end: number, startsBefore: number, events: boolean): void {
    // Every key ends in `_tokens"` or `_count"`. A search for the underscores costs ~15 ns a
    // call: ~0.1 us on a 380-byte chat answer (six of them) against ~0.3 for a pass in
    // JavaScript that skips what cannot end a key (whose letters are common in JSON text).
    // Where underscores come thick (code), that pass is the cheaper one: it takes over.
    let hits = 0;
    let from = 0;
    for (let u = b.indexOf(UNDERSCORE); u !== -1 && u < end; u = b.indexOf(UNDERSCORE, u + 1)) {
      if (u + TOKENS_END.length < end && bytesAt(b, u + 1, TOKENS_END)) this.#field(b, u + TOKENS_END.length, end, startsBefore);
      else if (u + COUNT_END.length < end && bytesAt(b, u + 1, COUNT_END)) this.#field(b, u + COUNT_END.length, end, startsBefore);
      if (++hits === DENSE_HITS) {
        if (u - from < DENSE_HITS * DENSE_GAP) {
          this.#skipScan(b, u + 1, end, startsBefore);
          break;
        }
        hits = 0;
        from = u;
      }
    }
    if (!events) return;
    // A line's text is looked at only at its end.
    let lineStart = 0;
    let first = this.#lineFirst;
    let done = this.#lineDone;
    // A line begun in an earlier chunk is not read for a failure (servers write an event whole).
    const continued = first !== 0;
    for (let i = b.indexOf(LF); i !== -1 && i < end; i = b.indexOf(LF, i + 1)) {
      if (first === 0) first = firstText(b, lineStart, i);
      if (first !== 0 && isEventLine(first) && doneProgress(done, b, lineStart, i) !== DONE_LINE) this.#events++;
      if ((first === 0x7b || first === 0x64 || first === 0x65) && !(continued && lineStart === 0) && reportsFailure(b, lineStart, i)) this.#failed = true;
      first = 0;
      done = 0;
      lineStart = i + 1;
    }
    if (first === 0) first = firstText(b, lineStart, end);
    this.#lineFirst = first;
    this.#lineDone = first === 0 ? 0 : doneProgress(done, b, lineStart, end);
  }

  /** Reads the usage fields of b[from, end) by a pass that looks at one byte in six where it can. */
  #skipScan(b: Buffer, from: number, end: number, startsBefore: number): void {
    const skip = KEY_ENDS.skip;
    for (let i = from + KEY_ENDS.width - 1; i < end;) {
      const c = b[i]!;
      const by = skip[c]!;
      if (by !== 0) {
        i += by;
        continue;
      }
      if (endsAt(b, i, TOKENS_END) || endsAt(b, i, COUNT_END)) this.#field(b, i, end, startsBefore);
      i += KEY_ENDS.afterLook[c]!;
    }
  }

  /** `close` is the index of a key's closing quote: if it is a usage key, its number. */
  #field(b: Buffer, close: number, end: number, startsBefore: number): void {
    for (let k = 0; k < this.#keys; k++) {
      const key = KEYS[k]!;
      const start = close + 1 - key.length;
      if (start < 0 || start >= startsBefore || !bytesAt(b, start, key)) continue;
      const n = numberAfter(b, close + 1, end);
      switch (k) {
        case EVAL: if (n > this.#eval || (this.#lastWins && n >= 0)) this.#eval = n; break;
        case PROMPT_EVAL: if (n > this.#promptEval || (this.#lastWins && n >= 0)) this.#promptEval = n; break;
        case TOTAL: if (n > this.#total) this.#total = n; break;
        case PROMPT: if (n > this.#prompt) this.#prompt = n; break;
        case COMPLETION: if (n > this.#completion) this.#completion = n; break;
        case INPUT: if (n > this.#input) this.#input = n; break;
        case OUTPUT: if (n > this.#output) this.#output = n; break;
      }
      return;
    }
  }

  /**
   * The answer has ended. True when its last bytes are still being decoded: its figures are
   * whole once `then(arg)` is called (a millisecond or so later).
   */
  decoding<T>(then: (arg: T) => void, arg: T): boolean {
    const decoder = this.#decoder;
    if (decoder === null) return false;
    this.#decoder = null;
    return decoder.end(() => then(arg));
  }

  /**
   * The server reported usage (a non-streamed answer without it is not an LLM's). Its
   * prompt's alone is usage too: Ollama's /api/embed answers with prompt_eval_count only.
   */
  get reported(): boolean {
    return this.#total >= 0 || this.#eval >= 0 || this.#promptEval >= 0 || this.#prompt >= 0 || this.#completion >= 0 || this.#input >= 0 || this.#output >= 0;
  }

  /**
   * A line of the stream said its server failed after its 200 head: Ollama's last line
   * `{"error": ...}` (protocols.md), an OpenAI-compatible `data: {"error": ...}` event, a
   * Responses API `event: error` or `response.failed`, an event whose `type` is one of those.
   */
  get reportedFailure(): boolean {
    return this.#failed;
  }

  get tokens(): number {
    if (this.#total >= 0) return this.#total;
    if (this.#eval >= 0 || this.#promptEval >= 0) return Math.max(0, this.#eval) + Math.max(0, this.#promptEval);
    if (this.#output >= 0 || this.#input >= 0) return Math.max(0, this.#output) + Math.max(0, this.#input);
    // One per streamed event (a rough count, used only when the server reports no usage).
    return Math.max(1, this.#events);
  }

  /** Tokens of the prompt, as the server reports them (OpenAI prompt_tokens or input_tokens, Ollama prompt_eval_count); 0 when it does not. */
  get input(): number {
    if (this.#prompt >= 0) return this.#prompt;
    if (this.#input >= 0) return this.#input;
    return Math.max(0, this.#promptEval);
  }

  /** Tokens generated: completion_tokens, output_tokens, eval_count, or else one per streamed event. */
  get output(): number {
    if (this.#completion >= 0) return this.#completion;
    if (this.#output >= 0) return this.#output;
    if (this.#eval >= 0) return this.#eval;
    if (this.#total >= 0) return Math.max(0, this.#total - this.input);
    // Usage that counts the prompt alone (an embedding) says nothing was generated.
    if (this.#promptEval >= 0 || this.#prompt >= 0 || this.#input >= 0) return 0;
    return Math.max(1, this.#events);
  }
}

/** A Content-Encoding value's coding, in lower case; null when the body is as it is (none, `identity`). */
export function contentCoding(value: string): string | null {
  const coding = value.trim().toLowerCase();
  return coding === '' || coding === 'identity' ? null : coding;
}

/** `b` holds `word` ending at index `last`. */
function endsAt(b: Buffer, last: number, word: Buffer): boolean {
  const start = last + 1 - word.length;
  return start >= 0 && bytesAt(b, start, word);
}

/** The integer after a key (`: 123`), or -1 when none follows before `end`. */
function numberAfter(b: Buffer, i: number, end: number): number {
  while (i < end && isSpace(b[i]!)) i++;
  if (i === end || b[i] !== 0x3a) return -1;
  i++;
  while (i < end && isSpace(b[i]!)) i++;
  let n = -1;
  for (; i < end; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) break;
    n = n < 0 ? d : n * 10 + d;
  }
  return n;
}

/** The first byte of b[from, to) other than CR; 0 for a blank line. */
function firstText(b: Buffer, from: number, to: number): number {
  for (let i = from; i < to; i++) if (b[i] !== CR) return b[i]!;
  return 0;
}

/**
 * A line that carries an event's content: an SSE `data:` line, or an NDJSON value. Not an SSE
 * comment (`: keep-alive`), nor an `event:`, `id:` or `retry:` line, which no JSON value
 * begins with either: counted, each would be charged as a token.
 */
function isEventLine(first: number): boolean {
  return first !== COLON && first !== 0x65 && first !== 0x69 && first !== 0x72;
}

/**
 * b[from, to) is a line (CR aside) that says the server failed: `{"error"`, `data: {"error"`,
 * `{"type": "error"` (or `"response.failed"`, with or without `data:`), `event: error` (or
 * `response.failed`), llama.cpp's server's `error:` field. A line of content fails at its
 * second or third byte.
 */
export function reportsFailure(b: Buffer, from: number, to: number): boolean {
  let i = from;
  while (i < to && (b[i] === CR || b[i] === 0x20)) i++;
  if (bytesAt(b, i, ERROR_FIELD)) return true;
  if (bytesAt(b, i, EVENT)) {
    i = spacesFrom(b, i + EVENT.length, to);
    return wordEnds(b, i, to, ERROR_WORD) || wordEnds(b, i, to, FAILED_WORD);
  }
  if (bytesAt(b, i, DATA)) i = spacesFrom(b, i + DATA.length, to);
  if (i >= to || b[i] !== 0x7b) return false;
  i = spacesFrom(b, i + 1, to);
  if (bytesAt(b, i, ERROR_KEY)) return true;
  if (!bytesAt(b, i, TYPE_KEY)) return false;
  i = spacesFrom(b, i + TYPE_KEY.length, to);
  if (i >= to || b[i] !== 0x3a) return false;
  i = spacesFrom(b, i + 1, to);
  return bytesAt(b, i, ERROR_KEY) || bytesAt(b, i, FAILED_VALUE);
}

function spacesFrom(b: Buffer, i: number, to: number): number {
  while (i < to && (b[i] === 0x20 || b[i] === 0x09)) i++;
  return i;
}

/** `word` at b[i], then only spaces or CR to the line's end. */
function wordEnds(b: Buffer, i: number, to: number, word: Buffer): boolean {
  if (!bytesAt(b, i, word)) return false;
  for (let k = i + word.length; k < to; k++) if (b[k] !== CR && b[k] !== 0x20) return false;
  return true;
}

/**
 * How far a line is `data: [DONE]` (OpenAI's end of stream: no token) after b[from, to),
 * from `state`, how far it was before them: the bytes of `data:` then of `[DONE]` matched,
 * spaces between them, CR after them; NOT_DONE from the first byte that cannot be. A line
 * with content fails at its first `{`: a few bytes looked at.
 */
function doneProgress(state: number, b: Buffer, from: number, to: number): number {
  for (let i = from; i < to && state !== NOT_DONE; i++) {
    const c = b[i]!;
    if (state < DATA.length) state = c === DATA[state] ? state + 1 : NOT_DONE;
    else if (state === DATA.length && c === 0x20) continue;
    else if (state < DONE_LINE) state = c === DONE[state - DATA.length] ? state + 1 : NOT_DONE;
    else if (c !== CR) state = NOT_DONE;
  }
  return state;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === LF || c === CR || c === 0x09;
}
