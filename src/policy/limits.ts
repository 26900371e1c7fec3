// Rate-limit rules as the data plane sees them: a bucket reference names the bucket (for
// Redis), its slot (for the shared in-memory buckets) and its rule.

import type { LimitsConfig } from '../config/index.js';
import { ruleOf, type BucketRule } from './token-bucket.js';

export const enum BucketKind {
  /** One token per request, taken at admission. */
  Requests = 0,
  /** LLM tokens: admission needs one left; the response's count is charged afterwards. */
  LlmTokens = 1,
}

export interface BucketRef {
  readonly id: string;
  readonly slot: number;
  readonly rule: BucketRule;
  readonly kind: BucketKind;
  /** The limit as a client reads it in a 429: `requests_per_minute of API key 'a' on demo-1`. */
  readonly limit: string;
}

/**
 * The buckets a LimitsConfig asks for, with `prefix` naming their owner for the store
 * (`dep:demo-1`) and `owner` for people (`deployment demo-1`).
 */
export function bucketsFor(prefix: string, owner: string, limits: LimitsConfig, slotOf: (id: string) => number): BucketRef[] {
  const out: BucketRef[] = [];
  const add = (suffix: string, setting: keyof LimitsConfig, periodMs: number, kind: BucketKind): void => {
    const limit = limits[setting];
    if (limit <= 0) return;
    const id = `${prefix}:${suffix}`;
    out.push({ id, slot: slotOf(id), rule: ruleOf(limit, periodMs), kind, limit: `${setting} (${limit}) of ${owner}` });
  };
  add('rps', 'requests_per_second', 1_000, BucketKind.Requests);
  add('rpm', 'requests_per_minute', 60_000, BucketKind.Requests);
  add('tpm', 'tokens_per_minute', 60_000, BucketKind.LlmTokens);
  return out;
}
