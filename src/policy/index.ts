export { bearerToken, GENERATED_KEY_PREFIX, hashKey, keyLabel, KeyScope, presentedKey } from './api-keys.js';
export { BucketKind, bucketsFor, type BucketRef } from './limits.js';
export { RateLimiter, RedisUnavailable, type Verdict } from './rate-limiter.js';
export { RedisLimiter } from './redis-limiter.js';
export { decodeEntry, encodeEntry, RedisCache, SHARED_CACHE_PREFIX } from './redis-cache.js';
export { SharedBuckets, refillAndTake, type BucketRule, type TakeResult } from './token-bucket.js';
export { contentCoding, TokenCounter } from './token-counter.js';
export { cacheKey, cacheWant, callerKey, canonicalJson, headersWithAge, ResponseCache, servedByOf, storableForMs, storedHeaders, streamEndsInError, type CachedResponse, type CacheWant } from './response-cache.js';
