// Rate-limit rules as the data plane sees them: a bucket reference names the bucket (for
// Redis), its slot (for the shared in-memory buckets) and its rule.

import type { LimitsConfig } from '../config/index.js';
import type { BucketRule } from './token-bucket.js';

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
}

/** The buckets a LimitsConfig asks for, with `prefix` naming their owner (`dep:demo-1`). */
export function bucketsFor(prefix: string, limits: LimitsConfig, slotOf: (id: string) => number): BucketRef[] {
  const out: BucketRef[] = [];
  const add = (suffix: string, capacity: number, periodMs: number, kind: BucketKind): void => {
    if (capacity <= 0) return;
    const id = `${prefix}:${suffix}`;
    out.push({ id, slot: slotOf(id), rule: { capacity, periodMs }, kind });
  };
  add('rps', limits.requests_per_second, 1_000, BucketKind.Requests);
  add('rpm', limits.requests_per_minute, 60_000, BucketKind.Requests);
  add('tpm', limits.tokens_per_minute, 60_000, BucketKind.LlmTokens);
  return out;
}
