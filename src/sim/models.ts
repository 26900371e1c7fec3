// The served models and Ollama's name matching: `demo`, `demo:latest`, `library/demo` and
// `registry.ollama.ai/library/demo:latest` are one model, compared case-insensitively.

import { createHash } from 'node:crypto';
import { rfc3339Nano } from './clock.js';

const DEFAULT_PREFIX = 'registry.ollama.ai/library/';

export interface SimModel {
  /** Display name as `/api/tags` shows it, e.g. `demo:latest`. */
  readonly name: string;
  readonly digest: string;
  readonly size: number;
  readonly modifiedAt: string;
  /** Seconds since the epoch, for OpenAI `created`. */
  readonly created: number;
}

/** Fully qualified, lower-cased form used only for comparison. */
function qualify(name: string): string {
  let n = name.trim().toLowerCase();
  const lastSlash = n.lastIndexOf('/');
  if (n.indexOf(':', lastSlash + 1) === -1) n += ':latest';
  const slashes = n.split('/').length - 1;
  if (slashes === 0) n = DEFAULT_PREFIX + n;
  else if (slashes === 1) n = 'registry.ollama.ai/' + n;
  return n;
}

/** Shortest unambiguous form, the way `/api/tags` lists names (`demo:latest`). */
function display(qualified: string): string {
  if (qualified.startsWith(DEFAULT_PREFIX)) return qualified.slice(DEFAULT_PREFIX.length);
  if (qualified.startsWith('registry.ollama.ai/')) return qualified.slice('registry.ollama.ai/'.length);
  return qualified;
}

const RESOLVE_CACHE_MAX = 1024;

export class ModelSet {
  readonly list: readonly SimModel[];
  readonly #byQualified = new Map<string, SimModel>();
  // Request bodies repeat the same few names; skip the string work after the first time.
  readonly #cache = new Map<string, SimModel | null>();

  constructor(names: readonly string[], startedAt: Date) {
    const list: SimModel[] = [];
    for (const raw of names) {
      const q = qualify(raw);
      if (this.#byQualified.has(q)) continue;
      const name = display(q);
      const model: SimModel = Object.freeze({
        name,
        digest: createHash('sha256').update(q).digest('hex'),
        size: 1_000_000 + list.length,
        modifiedAt: rfc3339Nano(startedAt.getTime()),
        created: Math.floor(startedAt.getTime() / 1000),
      });
      this.#byQualified.set(q, model);
      list.push(model);
    }
    this.list = Object.freeze(list);
  }

  resolve(name: unknown): SimModel | undefined {
    if (typeof name !== 'string' || name === '') return undefined;
    let hit = this.#cache.get(name);
    if (hit === undefined) {
      hit = this.#byQualified.get(qualify(name)) ?? null;
      if (this.#cache.size >= RESOLVE_CACHE_MAX) this.#cache.clear();
      this.#cache.set(name, hit);
    }
    return hit ?? undefined;
  }
}

export const MODEL_DETAILS = Object.freeze({
  parent_model: '',
  format: 'gguf',
  family: 'llama',
  families: ['llama'],
  parameter_size: '1B',
  quantization_level: 'Q4_K_M',
});
