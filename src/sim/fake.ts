// Deterministic stand-ins for model output, so tests can predict every byte: token i is
// `tok<i> `, an embedding depends only on its input text, and prompt "tokens" are words.

/** Token `i` of every generated response. */
export function tokenText(i: number): string {
  return 'tok' + i + ' ';
}

/** The whole text of an `n`-token response, as a client concatenates it. */
export function responseText(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += tokenText(i);
  return s;
}

/** Whitespace-separated words, at least 1 for a non-empty text (a prompt costs a token). */
export function countWords(text: string): number {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const space = c === 32 || c === 10 || c === 13 || c === 9;
    if (!space && !inWord) words++;
    inWord = !space;
  }
  return words === 0 && text.length > 0 ? 1 : words;
}

/** Words in OpenAI/Ollama message content: a string or a list of `{type:"text", text}` parts. */
export function contentWords(content: unknown): number {
  if (typeof content === 'string') return countWords(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (typeof part === 'object' && part !== null && typeof (part as { text?: unknown }).text === 'string') {
      n += countWords((part as { text: string }).text);
    }
  }
  return n;
}

export const DEFAULT_EMBEDDING_DIMS = 8;
const MAX_EMBEDDING_DIMS = 4096;

/** The `dimensions` a request asked for, when usable; else the default. */
export function embeddingDims(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= MAX_EMBEDDING_DIMS ? v : DEFAULT_EMBEDDING_DIMS;
}

/** FNV-1a, to seed a vector from its text without a crypto hash per request. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A vector in [-1, 1) that depends only on `text`; `normalize` makes it unit length. */
export function embedding(text: string, dims: number, normalize: boolean): number[] {
  let state = fnv1a(text) || 1;
  const v = new Array<number>(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    // xorshift32: cheap, deterministic, good enough to look like a vector.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const x = ((state >>> 0) / 0x100000000) * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  if (normalize && norm > 0) {
    const inv = 1 / Math.sqrt(norm);
    for (let i = 0; i < dims; i++) v[i] = Math.fround(v[i]! * inv);
  }
  return v;
}
