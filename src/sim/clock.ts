// Timestamps in the shapes the real servers emit. Ollama writes Go's time.Time JSON form:
// RFC 3339, UTC, nanoseconds with trailing zeros trimmed (`2023-08-04T19:22:45.499127Z`).

import { performance } from 'node:perf_hooks';

let cachedSecond = -1;
let cachedPrefix = '';

/** RFC 3339 with up to 9 fractional digits; `nanosInMs` adds sub-millisecond precision. */
export function rfc3339Nano(epochMs: number, nanosInMs = 0): string {
  const second = Math.floor(epochMs / 1000);
  // Streams call this per chunk; the date part only changes once a second.
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const nanos = Math.floor(epochMs - second * 1000) * 1_000_000 + nanosInMs;
  if (nanos === 0) return cachedPrefix + 'Z';
  let frac = String(nanos).padStart(9, '0');
  let end = frac.length;
  while (frac.charCodeAt(end - 1) === 48 /* '0' */) end--;
  frac = frac.slice(0, end);
  return cachedPrefix + '.' + frac + 'Z';
}

/** Now, as Ollama's `created_at`. */
export function createdAt(): string {
  const now = performance.timeOrigin + performance.now();
  const ms = Math.floor(now);
  return rfc3339Nano(ms, Math.floor((now - ms) * 1_000_000));
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Milliseconds (monotonic) to integer nanoseconds, at least 1 so `omitempty` fields stay present. */
export function msToNs(ms: number): number {
  return Math.max(1, Math.round(ms * 1_000_000));
}
