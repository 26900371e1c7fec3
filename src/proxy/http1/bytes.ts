// Byte-level pieces both HTTP/1.1 parsers use: the token table, hex digits, and views of
// the buffer a parser is fed.

import type { Buffer } from 'node:buffer';

/** 1 for the bytes of a token (RFC 9110 5.6.2): header names, methods, transfer codings, chunk extension names and values. */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** The value of a hex digit, or -1. */
export function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const VIEW_SLOTS = 1024; // a power of two

/**
 * Body pieces are views of the buffer a parser is fed, which is its thread's one read
 * buffer, read after read: a workload's bodies sit at the same few offsets of it, and
 * Buffer#subarray costs ~100 ns. So views of that buffer are kept by start offset and
 * handed out again when start and length match. Sharing a view is safe: a piece is only
 * read during the call, and whoever keeps it copies it (the next read overwrites the bytes
 * anyway). One cache per parser module: each reads its own buffer.
 */
export class ViewCache {
  #buf: Buffer | null = null;
  readonly #views: Array<Buffer | undefined> = new Array<Buffer | undefined>(VIEW_SLOTS).fill(undefined);

  /** `buf[start, end)` as a Buffer view (`buf` itself when that is all of it). */
  of(buf: Buffer, start: number, end: number): Buffer {
    if (start === 0 && end === buf.length) return buf;
    if (buf !== this.#buf) {
      this.#buf = buf;
      this.#views.fill(undefined);
    }
    const slot = start & (VIEW_SLOTS - 1);
    const cached = this.#views[slot];
    if (cached !== undefined && cached.length === end - start && cached.byteOffset === buf.byteOffset + start) return cached;
    return (this.#views[slot] = buf.subarray(start, end));
  }
}
