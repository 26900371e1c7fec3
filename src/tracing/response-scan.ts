// What a traced request's response says about itself, beyond the token counts cost uses:
// the model that answered and why it stopped. Runs only for requests whose span records
// (sampled), in place of the plain TokenCounter, so cost and token limits read the same
// counts from it.

import { Buffer } from 'node:buffer';
import { TokenCounter } from '../policy/index.js';

// OpenAI's finish_reason (every choice, non-streamed JSON and the last SSE chunks; null
// while streaming, which the pattern skips), Ollama's done_reason.
const FINISH = /"(?:finish_reason|done_reason)"\s*:\s*"([^"\\]{1,64})"/g;
// The first top-level-looking one: responses name their model before any content.
const MODEL = /"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"/;
const TAIL = 96;
const MAX_REASONS = 16;

export class ResponseScan extends TokenCounter {
  #tail = '';
  model: string | null = null;
  readonly finishReasons: string[] = [];

  override observe(chunk: Buffer, streamed: boolean): void {
    super.observe(chunk, streamed);
    const text = this.#tail + chunk.toString('latin1');
    if (this.model === null) {
      const m = MODEL.exec(text);
      if (m !== null) this.model = fromLatin1(m[1]!);
    }
    FINISH.lastIndex = 0;
    // The tail is scanned again with the next chunk: a reason wholly inside it is found twice, so reasons are kept once each.
    for (let m = FINISH.exec(text); m !== null; m = FINISH.exec(text)) {
      const reason = m[1]!;
      if (this.finishReasons.length < MAX_REASONS && !this.finishReasons.includes(reason)) this.finishReasons.push(reason);
    }
    this.#tail = text.length > TAIL ? text.slice(-TAIL) : text;
  }
}

/** The chunk was read as latin1 (one char per byte): the UTF-8 text those bytes hold, JSON escapes undone. */
function fromLatin1(raw: string): string {
  const text = Buffer.from(raw, 'latin1').toString('utf8');
  if (!text.includes('\\')) return text;
  try {
    return JSON.parse(`"${text}"`) as string;
  } catch {
    return text;
  }
}
