// Counts the LLM tokens of a response for tokens-per-minute limits and for cost: the usage the server
// reports (OpenAI `usage.total_tokens`, Ollama `prompt_eval_count` + `eval_count`), or,
// when it reports none, one token per streamed event. Scans chunks as they pass, keeping
// only a short tail so a field split across two chunks is still found.

// Global: one chunk may hold several usages (Ollama's OpenAI compat layer sends a zero usage
// on every content chunk and the real one on the last), so every match is looked at.
const TOTAL = /"total_tokens"\s*:\s*(\d+)/g;
const EVAL = /"eval_count"\s*:\s*(\d+)/g;
const PROMPT_EVAL = /"prompt_eval_count"\s*:\s*(\d+)/g;
const PROMPT = /"prompt_tokens"\s*:\s*(\d+)/g;
const COMPLETION = /"completion_tokens"\s*:\s*(\d+)/g;
const TAIL = 64;

/** The largest number `re` captures in `text`, or `floor` when none is larger. */
function maxMatch(re: RegExp, text: string, floor: number): number {
  let max = floor;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const n = Number(m[1]);
    if (n > max) max = n;
  }
  return max;
}

export class TokenCounter {
  #tail = '';
  #reported = -1;
  #evalCount = -1;
  #promptCount = 0;
  #promptTokens = -1;
  #completionTokens = -1;
  #events = 0;
  /** The current line has a non-blank character (SSE events end with a blank line). */
  #inLine = false;

  observe(chunk: Buffer): void {
    const text = this.#tail + chunk.toString('latin1');
    this.#reported = maxMatch(TOTAL, text, this.#reported);
    this.#evalCount = maxMatch(EVAL, text, this.#evalCount);
    this.#promptCount = maxMatch(PROMPT_EVAL, text, this.#promptCount);
    this.#promptTokens = maxMatch(PROMPT, text, this.#promptTokens);
    this.#completionTokens = maxMatch(COMPLETION, text, this.#completionTokens);
    // One event per non-blank line: an NDJSON line, or an SSE `data:` line (not the blank
    // line that ends each SSE event).
    for (let i = this.#tail.length; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) {
        if (this.#inLine) this.#events++;
        this.#inLine = false;
      } else if (c !== 13) {
        this.#inLine = true;
      }
    }
    this.#tail = text.length > TAIL ? text.slice(-TAIL) : text;
  }

  get tokens(): number {
    if (this.#reported >= 0) return this.#reported;
    if (this.#evalCount >= 0) return this.#evalCount + this.#promptCount;
    // One per streamed event (a rough count, used only when the server reports no usage).
    return Math.max(1, this.#events);
  }

  /** Tokens of the prompt, as the server reports them (OpenAI prompt_tokens, Ollama prompt_eval_count); 0 when it does not. */
  get input(): number {
    return this.#promptTokens >= 0 ? this.#promptTokens : this.#promptCount;
  }

  /** Tokens generated: completion_tokens, eval_count, or else one per streamed event. */
  get output(): number {
    if (this.#completionTokens >= 0) return this.#completionTokens;
    if (this.#evalCount >= 0) return this.#evalCount;
    if (this.#reported >= 0) return Math.max(0, this.#reported - this.input);
    return Math.max(1, this.#events);
  }
}
