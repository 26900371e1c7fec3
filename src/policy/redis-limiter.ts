// Token buckets in Redis, for limits shared by several gateway instances: one atomic Lua
// script per check (no read-modify-write race between instances), a command timeout so
// the data plane never hangs on Redis, and fail-open (onto each instance's own buckets) or
// fail-closed when it is away.
// Its calls go through a breaker: a Redis that keeps failing is not waited on per request.

import type { Redis } from 'ioredis';
import type { DependencyBreakerConfig } from '../config/index.js';
import type { DependencyBreaker, DependencyBreakers } from '../dependencies/index.js';
import { dataPlaneRedis } from './redis-client.js';
import type { BucketRule, TakeResult } from './token-bucket.js';

// Same arithmetic as refillAndTake() in token-bucket.ts, over several buckets at once and
// all-or-nothing: a request denied by one bucket takes nothing from the others. Time comes
// from Redis itself (TIME), so instances with skewed clocks still agree.
// ARGV: per bucket, capacity, limit (the refill per period), period (ms), cost, need.
// A key expires once its bucket would be full again (a missing key is a full bucket).
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local tokens = {}
local allowed = 1
for i = 1, n do
  local capacity = tonumber(ARGV[i * 5 - 4])
  local rate = tonumber(ARGV[i * 5 - 3]) / tonumber(ARGV[i * 5 - 2])
  local cost = tonumber(ARGV[i * 5 - 1])
  local need = tonumber(ARGV[i * 5])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'last')
  local tk = tonumber(state[1])
  local last = tonumber(state[2])
  if tk == nil or last == nil then
    tk = capacity
  else
    tk = math.min(capacity, tk + math.max(0, now - last) * rate)
  end
  tokens[i] = tk
  if not (need == 0 or (tk >= need and tk >= cost)) then allowed = 0 end
end
local out = {allowed}
for i = 1, n do
  local tk = tokens[i]
  if allowed == 1 then tk = tk - tonumber(ARGV[i * 5 - 1]) end
  local period = tonumber(ARGV[i * 5 - 2])
  local full = (tonumber(ARGV[i * 5 - 4]) - tk) * period / tonumber(ARGV[i * 5 - 3])
  redis.call('HSET', KEYS[i], 'tokens', tostring(tk), 'last', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(math.max(period * 2, full + period)))
  out[i + 1] = tostring(tk)
end
return out
`;

export interface RedisLimiterOptions {
  readonly url: string;
  readonly commandTimeoutMs: number;
  readonly keyPrefix: string;
  /** This thread's breakers, and the settings of this one (dependencies.redis.rate_limit). */
  readonly breakers: DependencyBreakers;
  readonly breaker: DependencyBreakerConfig;
}

type TakeReply = [number, ...string[]];

type LimiterRedis = Redis & { sluiceTake(...args: Array<string | number>): Promise<TakeReply> };

export interface BucketTake {
  readonly key: string;
  readonly rule: BucketRule;
  readonly cost: number;
  readonly need: number;
}

export class RedisLimiter {
  readonly #redis: LimiterRedis;
  readonly #prefix: string;
  readonly #breaker: DependencyBreaker<[Array<string | number>], TakeReply>;
  /** What a failed take says: while there is no connection, why (a refused password, Redis down). */
  readonly failure: (err: unknown) => string;

  constructor(options: RedisLimiterOptions) {
    const { redis, failure } = dataPlaneRedis(options.url, options.commandTimeoutMs);
    this.failure = failure;
    redis.defineCommand('sluiceTake', { lua: TAKE_SCRIPT });
    this.#redis = redis as LimiterRedis;
    this.#prefix = options.keyPrefix;
    this.#breaker = options.breakers.add('redis', 'rate_limit', options.breaker, (args: Array<string | number>) => this.#redis.sluiceTake(...args));
  }

  get ready(): boolean {
    return this.#redis.status === 'ready';
  }

  /**
   * Takes from every bucket or from none. Resolves with whether it was allowed and each
   * bucket's result; rejects when Redis is unreachable or slow, or at once while its
   * breaker is open (the caller applies fail-open or fail-closed).
   */
  async take(takes: readonly BucketTake[]): Promise<{ allowed: boolean; results: TakeResult[] }> {
    const args: Array<string | number> = [takes.length];
    for (const t of takes) args.push(this.#prefix + t.key);
    for (const t of takes) args.push(t.rule.capacity, t.rule.limit, t.rule.periodMs, t.cost, t.need);
    const [allowed, ...tokens] = await this.#breaker.fire(args);
    const ok = allowed === 1;
    return {
      allowed: ok,
      results: takes.map((t, i) => {
        const left = Number(tokens[i]);
        const rate = t.rule.limit / t.rule.periodMs;
        const bucketOk = ok || t.need === 0 || (left >= t.need && left >= t.cost);
        return {
          allowed: bucketOk,
          limit: t.rule.limit,
          capacity: t.rule.capacity,
          tokens: left,
          remaining: Math.max(0, Math.floor(left)),
          retryAfterMs: bucketOk ? 0 : Math.ceil((Math.max(t.need, t.cost) - left) / rate),
          resetMs: Math.ceil((t.rule.capacity - left) / rate),
        };
      }),
    };
  }

  close(): void {
    this.#redis.disconnect();
  }
}
