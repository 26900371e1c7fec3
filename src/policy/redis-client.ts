// The Redis client of a data-plane policy (rate limits, the shared cache): every command
// answers within a short timeout or fails, nothing queues while disconnected, and the
// client reconnects in the background. The data plane never waits longer than that.

import { Redis } from 'ioredis';

export function dataPlaneRedis(url: string, commandTimeoutMs: number): Redis {
  const redis = new Redis(url, {
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(500, commandTimeoutMs * 4),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    // Keep trying in the background; commands fail fast meanwhile.
    retryStrategy: (attempt) => Math.min(1000, attempt * 100),
  });
  redis.on('error', () => undefined); // surfaced through failed commands and metrics
  return redis;
}
