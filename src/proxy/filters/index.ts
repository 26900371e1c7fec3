export { FilterChain, FilterStatus, type RequestFilter } from './filter.js';
export { AuthFilter, authRefusal, WWW_AUTHENTICATE } from './auth.js';
export { RateLimitFilter } from './rate-limit.js';
export { CacheFilter } from './cache.js';
