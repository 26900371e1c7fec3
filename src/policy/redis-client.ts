// The Redis client of a data-plane policy (rate limits, the shared cache): every command
// answers within a short timeout or fails, nothing queues while disconnected, and the
// client reconnects in the background. The data plane never waits longer than that.

import { Redis } from 'ioredis';
import { watchConnection } from '../dependencies/index.js';

export interface DataPlaneRedis {
  readonly redis: Redis;
  /** What a failed command says: while there is no connection, why (a refused password, Redis down). */
  readonly failure: (err: unknown) => string;
}

export function dataPlaneRedis(url: string, commandTimeoutMs: number): DataPlaneRedis {
  const redis = new Redis(url, {
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(500, commandTimeoutMs * 4),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    // Keep trying in the background; commands fail fast meanwhile.
    retryStrategy: (attempt) => Math.min(1000, attempt * 100),
  });
  // Surfaced through failed commands (their logs name why) and metrics.
  return { redis, failure: watchConnection(redis, commandTimeoutMs) };
}
