// Counts the LLM tokens of a response for tokens-per-minute limits, cost and the token
// metrics: the usage the server reports (OpenAI `usage.total_tokens`, Ollama
// `prompt_eval_count` + `eval_count`), or, when it reports none, one token per streamed event.
// Scans the chunks' bytes as they pass (Buffer.indexOf: no string made per chunk), keeping
// the last bytes of each chunk so a field split across two chunks is still found.

const KEYS = ['"total_tokens"', '"eval_count"', '"prompt_eval_count"', '"prompt_tokens"', '"completion_tokens"'].map((k) => Buffer.from(k, 'latin1'));
const TOTAL = 0;
const EVAL = 1;
const PROMPT_EVAL = 2;
const PROMPT = 3;
const COMPLETION = 4;
/** Longer than a key, a colon, spaces and a number: a field split across chunks is whole in the tail plus the next chunk's start. */
const TAIL = 64;
// Where a split field is put back together: the previous chunk's tail, then the new chunk's start.
const seam = Buffer.alloc(TAIL * 2);

export class TokenCounter {
  // Per key: the largest value seen (one chunk may hold several usages: Ollama's OpenAI
  // compat layer sends a zero usage on every content chunk and the real one on the last).
  readonly #max = [-1, -1, -1, -1, -1];
  #tail: Buffer | null = null;
  #events = 0;
  /** The current line has a non-blank character (SSE events end with a blank line). */
  #inLine = false;

  observe(chunk: Buffer): void {
    const tail = this.#tail;
    if (tail !== null) {
      // Fields that begin in the tail and end in this chunk; those wholly in either are found there.
      const head = Math.min(chunk.length, TAIL);
      tail.copy(seam, 0);
      chunk.copy(seam, tail.length, 0, head);
      this.#scan(seam.subarray(0, tail.length + head), tail.length);
    }
    this.#scan(chunk, chunk.length);
    this.#countEvents(chunk);
    if (chunk.length >= TAIL) {
      const next = tail !== null && tail.length === TAIL ? tail : Buffer.allocUnsafe(TAIL);
      chunk.copy(next, 0, chunk.length - TAIL);
      this.#tail = next;
    } else {
      // A short chunk: keep it whole after what is left of the previous tail.
      const keep = Math.min(tail === null ? 0 : tail.length, TAIL - chunk.length);
      const next = Buffer.allocUnsafe(keep + chunk.length);
      if (keep > 0) tail!.copy(next, 0, tail!.length - keep);
      chunk.copy(next, keep);
      this.#tail = next;
    }
  }

  /** Reads every key whose first byte is before `startsBefore`. */
  #scan(bytes: Buffer, startsBefore: number): void {
    const max = this.#max;
    for (let k = 0; k < KEYS.length; k++) {
      const key = KEYS[k]!;
      for (let at = bytes.indexOf(key); at !== -1 && at < startsBefore; at = bytes.indexOf(key, at + key.length)) {
        const n = numberAfter(bytes, at + key.length);
        if (n > max[k]!) max[k] = n;
      }
    }
  }

  // One event per non-blank line: an NDJSON line, or an SSE `data:` line (not the blank
  // line that ends each SSE event).
  #countEvents(chunk: Buffer): void {
    let from = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, from)) {
      if (this.#inLine || hasText(chunk, from, nl)) this.#events++;
      this.#inLine = false;
      from = nl + 1;
    }
    if (!this.#inLine && hasText(chunk, from, chunk.length)) this.#inLine = true;
  }

  /** The server reported usage (a non-streamed answer without it is not an LLM's). */
  get reported(): boolean {
    const max = this.#max;
    return max[TOTAL]! >= 0 || max[EVAL]! >= 0 || max[PROMPT]! >= 0 || max[COMPLETION]! >= 0;
  }

  get tokens(): number {
    const max = this.#max;
    if (max[TOTAL]! >= 0) return max[TOTAL]!;
    if (max[EVAL]! >= 0) return max[EVAL]! + Math.max(0, max[PROMPT_EVAL]!);
    // One per streamed event (a rough count, used only when the server reports no usage).
    return Math.max(1, this.#events);
  }

  /** Tokens of the prompt, as the server reports them (OpenAI prompt_tokens, Ollama prompt_eval_count); 0 when it does not. */
  get input(): number {
    const max = this.#max;
    return max[PROMPT]! >= 0 ? max[PROMPT]! : Math.max(0, max[PROMPT_EVAL]!);
  }

  /** Tokens generated: completion_tokens, eval_count, or else one per streamed event. */
  get output(): number {
    const max = this.#max;
    if (max[COMPLETION]! >= 0) return max[COMPLETION]!;
    if (max[EVAL]! >= 0) return max[EVAL]!;
    if (max[TOTAL]! >= 0) return Math.max(0, max[TOTAL]! - this.input);
    return Math.max(1, this.#events);
  }
}

/** The integer after a key (`: 123`), or -1 when none follows. */
function numberAfter(bytes: Buffer, i: number): number {
  const end = bytes.length;
  while (i < end && isSpace(bytes[i]!)) i++;
  if (i === end || bytes[i] !== 0x3a) return -1;
  i++;
  while (i < end && isSpace(bytes[i]!)) i++;
  let n = -1;
  for (; i < end; i++) {
    const d = bytes[i]! - 0x30;
    if (d < 0 || d > 9) break;
    n = n < 0 ? d : n * 10 + d;
  }
  return n;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function hasText(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 13) return true;
  return false;
}
