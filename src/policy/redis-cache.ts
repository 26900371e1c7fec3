// The shared tier of the response cache: entries in Redis, so that a response cached by one
// gateway instance (or worker thread) is a hit on all the others. One GET per lookup, one
// SET with PX = ttl_ms per stored response, and the short command timeout of every
// data-plane Redis client: a slow or absent Redis makes a miss, never a wait. Both go
// through one breaker: a Redis that keeps failing is not asked at all until a probe passes.

import type { Redis } from 'ioredis';
import type { DependencyBreakerConfig } from '../config/index.js';
import type { DependencyBreaker, DependencyBreakers } from '../dependencies/index.js';
import { dataPlaneRedis } from './redis-client.js';
import type { CachedResponse } from './response-cache.js';

export interface RedisCacheOptions {
  readonly url: string;
  readonly commandTimeoutMs: number;
  /** This thread's breakers, and the settings of this one (dependencies.redis.cache). */
  readonly breakers: DependencyBreakers;
  readonly breaker: DependencyBreakerConfig;
}

/** Every key of the shared cache starts with this, then `<deployment id>:<spec digest>:<cache key>`. */
export const SHARED_CACHE_PREFIX = 'sluice:cache:';

export class RedisCache {
  readonly #redis: Redis;
  // One action for both commands (a SET has a value): bound once, no closure per call.
  readonly #breaker: DependencyBreaker<[string, Buffer | null, number], Buffer | null | 'OK'>;
  /** What a failed lookup or store says: while there is no connection, why (a refused password, Redis down). */
  readonly failure: (err: unknown) => string;

  constructor(options: RedisCacheOptions) {
    // A client of its own: a multi-megabyte entry on the wire must not delay rate-limit checks.
    const { redis, failure } = dataPlaneRedis(options.url, options.commandTimeoutMs);
    this.#redis = redis;
    this.failure = failure;
    this.#breaker = options.breakers.add('redis', 'cache', options.breaker, (key: string, value: Buffer | null, ttlMs: number): Promise<Buffer | null | 'OK'> =>
      value === null ? this.#redis.getBuffer(key) : this.#redis.set(key, value, 'PX', ttlMs));
  }

  /** The encoded entry, or null when absent; rejects when Redis is unreachable or slow, or its breaker is open. */
  get(key: string): Promise<Buffer | null> {
    return this.#breaker.fire(key, null, 0) as Promise<Buffer | null>;
  }

  /** Stores an encoded entry that Redis drops after `ttlMs`. */
  set(key: string, value: Buffer, ttlMs: number): Promise<unknown> {
    return this.#breaker.fire(key, value, ttlMs);
  }
}

/** An entry in Redis could not be read (another format, or cut short). */
export class CacheEntryError extends Error {
  readonly code = 'SLUICE_ERR_CACHE_ENTRY';
}

/** A response as it was stored in Redis: storedAt is the storing instance's clock. */
export type SharedEntry = Pick<CachedResponse, 'status' | 'headers' | 'contentLength' | 'chunks' | 'storedAt'> & { readonly bodyBytes: number };

// Layout, big-endian: u8 format, u16 status, f64 storedAt, f64 contentLength, u32 header
// strings (names and values alternate), u32 chunks; then each header string and each chunk
// as u32 length + bytes. Header strings are latin1, as the upstream parser reads them.
const FORMAT = 1;
const FIXED_BYTES = 1 + 2 + 8 + 8 + 4 + 4;

export function encodeEntry(status: number, headers: readonly string[], contentLength: number, chunks: readonly Buffer[], bodyBytes: number, storedAt: number): Buffer {
  const out = Buffer.allocUnsafe(FIXED_BYTES + 4 * (headers.length + chunks.length) + headerBytes(headers) + bodyBytes);
  out.writeUInt8(FORMAT, 0);
  out.writeUInt16BE(status, 1);
  out.writeDoubleBE(storedAt, 3);
  out.writeDoubleBE(contentLength, 11);
  out.writeUInt32BE(headers.length, 19);
  out.writeUInt32BE(chunks.length, 23);
  let at = FIXED_BYTES;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    out.writeUInt32BE(h.length, at);
    at += 4 + out.write(h, at + 4, 'latin1');
  }
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    out.writeUInt32BE(c.length, at);
    at += 4 + c.copy(out, at + 4);
  }
  return out;
}

/** Reads an entry made by encodeEntry; its chunks are views of one buffer owned by the entry. */
export function decodeEntry(value: Buffer): SharedEntry {
  if (value.length < FIXED_BYTES || value[0] !== FORMAT) throw new CacheEntryError('not a cache entry of this version');
  // The client's reply may be a view of a larger socket read: keep a copy of the entry only.
  let buf = value;
  if (value.byteOffset !== 0 || value.buffer.byteLength !== value.length) {
    buf = Buffer.allocUnsafeSlow(value.length);
    value.copy(buf);
  }
  const headerCount = buf.readUInt32BE(19);
  const chunkCount = buf.readUInt32BE(23);
  let at = FIXED_BYTES;
  const headers: string[] = [];
  for (let i = 0; i < headerCount; i++) {
    const end = fieldEnd(buf, at);
    headers.push(buf.toString('latin1', at + 4, end));
    at = end;
  }
  const chunks: Buffer[] = [];
  let bodyBytes = 0;
  for (let i = 0; i < chunkCount; i++) {
    const end = fieldEnd(buf, at);
    chunks.push(buf.subarray(at + 4, end));
    bodyBytes += end - at - 4;
    at = end;
  }
  if (at !== buf.length) throw new CacheEntryError('cache entry has trailing bytes');
  return { status: buf.readUInt16BE(1), headers, contentLength: buf.readDoubleBE(11), chunks, bodyBytes, storedAt: buf.readDoubleBE(3) };
}

/** Where the length-prefixed field at `at` ends. */
function fieldEnd(buf: Buffer, at: number): number {
  if (at + 4 > buf.length) throw new CacheEntryError('cache entry cut short');
  const end = at + 4 + buf.readUInt32BE(at);
  if (end > buf.length) throw new CacheEntryError('cache entry cut short');
  return end;
}

function headerBytes(headers: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < headers.length; i++) n += headers[i]!.length;
  return n;
}
