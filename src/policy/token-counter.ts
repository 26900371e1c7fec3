// Counts the LLM tokens of a response for tokens-per-minute limits: the usage the server
// reports (OpenAI `usage.total_tokens`, Ollama `prompt_eval_count` + `eval_count`), or,
// when it reports none, one token per streamed event. Scans chunks as they pass, keeping
// only a short tail so a field split across two chunks is still found.

const TOTAL = /"total_tokens"\s*:\s*(\d+)/;
const EVAL = /"eval_count"\s*:\s*(\d+)/;
const PROMPT_EVAL = /"prompt_eval_count"\s*:\s*(\d+)/;
const TAIL = 64;

export class TokenCounter {
  #tail = '';
  #reported = -1;
  #evalCount = -1;
  #promptCount = 0;
  #events = 0;

  observe(chunk: Buffer): void {
    const text = this.#tail + chunk.toString('latin1');
    let m = TOTAL.exec(text);
    if (m !== null) this.#reported = Math.max(this.#reported, Number(m[1]));
    m = EVAL.exec(text);
    if (m !== null) this.#evalCount = Number(m[1]);
    m = PROMPT_EVAL.exec(text);
    if (m !== null) this.#promptCount = Number(m[1]);
    for (let i = this.#tail.length; i < text.length; i++) if (text.charCodeAt(i) === 10) this.#events++;
    this.#tail = text.length > TAIL ? text.slice(-TAIL) : text;
  }

  get tokens(): number {
    if (this.#reported >= 0) return this.#reported;
    if (this.#evalCount >= 0) return this.#evalCount + this.#promptCount;
    // One per line: an NDJSON chunk, or an SSE line (a rough count, used only when the server reports no usage).
    return Math.max(1, this.#events);
  }
}
