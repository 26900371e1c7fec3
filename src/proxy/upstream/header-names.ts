// Header-name comparison shared by the response parser and the proxy's header hygiene.

/**
 * `name` equals `lower` (a lower-case header name of [a-z0-9-]) ignoring case, without
 * allocating a lower-cased copy: OR-ing 0x20 folds A-Z onto a-z and leaves digits and '-'.
 */
export function sameName(name: string, lower: string): boolean {
  return name.length === lower.length && startsWithName(name, lower);
}

/** `value` starts with `lower` (lower-case [a-z0-9/-]) ignoring case, without allocating. */
export function startsWithName(value: string, lower: string): boolean {
  const n = lower.length;
  if (value.length < n) return false;
  for (let i = 0; i < n; i++) if ((value.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** The bytes of a lower-case name, for bytesStartWithName. */
export function nameBytes(lower: string): Uint8Array {
  return Uint8Array.from(lower, (c) => c.charCodeAt(0));
}

/**
 * `buf[start, end)` starts with `lower` (nameBytes of a lower-case name), ignoring case as
 * startsWithName does. Bytes, not a string: comparing two byte arrays costs less per
 * character than charCodeAt on a string that differs from call to call.
 */
export function bytesStartWithName(buf: Uint8Array, start: number, end: number, lower: Uint8Array): boolean {
  const n = lower.length;
  if (end - start < n) return false;
  for (let i = 0; i < n; i++) if ((buf[start + i]! | 0x20) !== lower[i]) return false;
  return true;
}

/** Header names listed in a Connection value, beyond the standard tokens; null when none. */
export function connectionTokens(value: string): string[] | null {
  // The common values name no header: answer without splitting.
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return null;
  }
  let out: string[] | null = null;
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade') (out ??= []).push(t);
  }
  return out;
}

/** The upstream response header names the gateway acts on; any other is Other. */
export const enum HeaderKind {
  Other,
  ContentLength,
  TransferEncoding,
  Connection,
  KeepAlive,
  Te,
  Trailer,
  Upgrade,
  Date,
  RequestId,
  ContentType,
  /** x-sluice-cache, x-sluice-version, x-sluice-served-by: the gateway's own response headers. */
  SluiceOwn,
  /** Where a redirect points: rewritten when it points into the replica (see redirect-location.ts). */
  Location,
  /** RateLimit-Limit, -Remaining, -Reset, RateLimit and RateLimit-Policy: dropped when the gateway sends its own. */
  RateLimit,
  /** A compressed answer: its bytes go as they come, its usage is read decompressed (Exchange #codedAs). */
  ContentEncoding,
  /** Access-Control-Allow-Origin and the others a CORS answer carries: dropped at the root, where the gateway's CORS policy answers (proxy/cors.ts). */
  AccessControl,
  /**
   * Strict-Transport-Security: the policy of the gateway's host is the gateway's (listen.hsts),
   * not a server's. A provider's (api.openai.com's `includeSubDomains; preload`) would pin
   * itself on the gateway's name, or come second after the gateway's own, which browsers ignore.
   */
  TransportSecurity,
  /** Any `proxy-*` name (last: DROPPED_RESPONSE_KINDS counts up to it). */
  Proxy,
}

// The known names grouped by length: a name is compared only with those of its length.
const NAMES_BY_LENGTH: string[][] = [];
const KINDS_BY_LENGTH: HeaderKind[][] = [];
for (const [name, kind] of [
  ['content-length', HeaderKind.ContentLength],
  ['transfer-encoding', HeaderKind.TransferEncoding],
  ['connection', HeaderKind.Connection],
  ['keep-alive', HeaderKind.KeepAlive],
  ['te', HeaderKind.Te],
  ['trailer', HeaderKind.Trailer],
  ['upgrade', HeaderKind.Upgrade],
  ['date', HeaderKind.Date],
  ['x-request-id', HeaderKind.RequestId],
  ['content-type', HeaderKind.ContentType],
  ['x-sluice-cache', HeaderKind.SluiceOwn],
  ['x-sluice-version', HeaderKind.SluiceOwn],
  ['x-sluice-served-by', HeaderKind.SluiceOwn],
  ['location', HeaderKind.Location],
  ['ratelimit', HeaderKind.RateLimit],
  ['ratelimit-limit', HeaderKind.RateLimit],
  ['ratelimit-reset', HeaderKind.RateLimit],
  ['ratelimit-policy', HeaderKind.RateLimit],
  ['ratelimit-remaining', HeaderKind.RateLimit],
  ['content-encoding', HeaderKind.ContentEncoding],
  ['access-control-allow-origin', HeaderKind.AccessControl],
  ['access-control-allow-credentials', HeaderKind.AccessControl],
  ['access-control-expose-headers', HeaderKind.AccessControl],
  ['access-control-allow-methods', HeaderKind.AccessControl],
  ['access-control-allow-headers', HeaderKind.AccessControl],
  ['access-control-max-age', HeaderKind.AccessControl],
  ['strict-transport-security', HeaderKind.TransportSecurity],
] as const) {
  (NAMES_BY_LENGTH[name.length] ??= []).push(name);
  (KINDS_BY_LENGTH[name.length] ??= []).push(kind);
}
const PROXY_PREFIX = 'proxy-';

/** The kind of header `name` (any case). */
export function kindOfName(name: string): HeaderKind {
  const names = NAMES_BY_LENGTH[name.length];
  if (names !== undefined) {
    for (let i = 0; i < names.length; i++) if (startsWithName(name, names[i]!)) return KINDS_BY_LENGTH[name.length]![i]!;
  }
  return name.length > PROXY_PREFIX.length && startsWithName(name, PROXY_PREFIX) ? HeaderKind.Proxy : HeaderKind.Other;
}

// The same names as bytes, for kindOfNameBytes.
const NAME_BYTES_BY_LENGTH: Uint8Array[][] = NAMES_BY_LENGTH.map((names) => names.map(nameBytes));
const PROXY_PREFIX_BYTES = nameBytes(PROXY_PREFIX);

/** kindOfName for the name in `buf[start, end)`, without making it a string. */
export function kindOfNameBytes(buf: Uint8Array, start: number, end: number): HeaderKind {
  const length = end - start;
  const names = NAME_BYTES_BY_LENGTH[length];
  if (names !== undefined) {
    for (let i = 0; i < names.length; i++) if (bytesStartWithName(buf, start, end, names[i]!)) return KINDS_BY_LENGTH[length]![i]!;
  }
  return length > PROXY_PREFIX.length && bytesStartWithName(buf, start, end, PROXY_PREFIX_BYTES) ? HeaderKind.Proxy : HeaderKind.Other;
}
