// Token buckets in Redis, for limits shared by several gateway instances: one atomic Lua
// script per check (no read-modify-write race between instances), a short command timeout
// so the data plane never hangs on Redis, and fail-open or fail-closed when it is away.

import { Redis } from 'ioredis';
import type { BucketRule, TakeResult } from './token-bucket.js';

// Same arithmetic as refillAndTake() in token-bucket.ts. Time comes from Redis itself
// (TIME), so instances with skewed clocks still agree.
const TAKE_SCRIPT = `
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = capacity / period
local state = redis.call('HMGET', key, 'tokens', 'last')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
end
local allowed = 0
if tokens >= need and (need == 0 or tokens >= cost) then
  allowed = 1
  tokens = tokens - cost
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'last', tostring(now))
redis.call('PEXPIRE', key, math.ceil(period * 2))
return {allowed, tostring(tokens)}
`;

export interface RedisLimiterOptions {
  readonly url: string;
  readonly commandTimeoutMs: number;
  readonly keyPrefix: string;
}

type TakeReply = [number, string];
type LimiterRedis = Redis & { sluiceTake(key: string, capacity: number, period: number, cost: number, need: number): Promise<TakeReply> };

export class RedisLimiter {
  readonly #redis: LimiterRedis;
  readonly #prefix: string;

  constructor(options: RedisLimiterOptions) {
    const redis = new Redis(options.url, {
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: Math.max(500, options.commandTimeoutMs * 4),
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      // Keep trying in the background; checks fail fast meanwhile.
      retryStrategy: (attempt) => Math.min(1000, attempt * 100),
    });
    redis.on('error', () => undefined); // surfaced through take() failures and metrics
    redis.defineCommand('sluiceTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    this.#redis = redis as LimiterRedis;
    this.#prefix = options.keyPrefix;
  }

  get ready(): boolean {
    return this.#redis.status === 'ready';
  }

  /** Rejects when Redis is unreachable or slow; the caller applies fail-open or fail-closed. */
  async take(key: string, rule: BucketRule, cost = 1, need = cost): Promise<TakeResult> {
    const [allowed, tokensText] = await this.#redis.sluiceTake(this.#prefix + key, rule.capacity, rule.periodMs, cost, need);
    const tokens = Number(tokensText);
    const rate = rule.capacity / rule.periodMs;
    const missing = Math.max(need, cost) - tokens;
    return {
      allowed: allowed === 1,
      remaining: Math.max(0, Math.floor(tokens)),
      retryAfterMs: allowed === 1 ? 0 : Math.ceil(missing / rate),
      resetMs: Math.ceil((rule.capacity - tokens) / rate),
    };
  }

  close(): void {
    this.#redis.disconnect();
  }
}
