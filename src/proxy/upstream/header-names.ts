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
