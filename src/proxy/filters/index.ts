export { FilterChain, FilterStatus, type RequestFilter } from './filter.js';
export { AuthFilter } from './auth.js';
export { RateLimitFilter } from './rate-limit.js';
export { CacheFilter } from './cache.js';
