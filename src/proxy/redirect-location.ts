// A model server's redirect names its own address: `http://127.0.0.1:8001/docs/` (built
// from the Host the gateway sent) or `/docs/` (a path of its own, which the client resolves
// against the gateway's URL, where `/docs/` routes nowhere). A client must be sent where
// the gateway serves that resource: under the route's prefix (`/<model>-<version>` or the
// alias `/<model>`; nothing at the root), in place of the replica's origin and base path.
// nginx does the first half by default (`proxy_redirect default`); the second half is what
// a path-prefix route needs too. A Location elsewhere (another host, a path outside a
// remote's base path, a relative reference) goes as sent.

import type { ReplicaRoute } from './route-table.js';

/**
 * The Location the client gets for the upstream's `value`, or null when it goes as sent.
 * `prefix`: the route's part of the client's path ('' at the root); `replicas`: the
 * deployment that answered (any of whose origins the value may name).
 */
export function clientLocation(value: string, replicas: readonly ReplicaRoute[], prefix: string): string | null {
  if (value.charCodeAt(0) === SLASH) {
    // An absolute path (not `//host`, a network-path reference to another host).
    if (value.charCodeAt(1) === SLASH || replicas.length === 0) return null;
    const basePath = replicas[0]!.basePath;
    if (basePath === '') return prefix === '' ? null : prefix + value;
    return underPath(value, 0, basePath) ? rebased(prefix, value.slice(basePath.length)) : null;
  }
  const lower = value.toLowerCase();
  for (const replica of replicas) {
    const authority = replica.origin.length - replica.basePath.length;
    if (!lower.startsWith(replica.origin.slice(0, authority).toLowerCase())) continue;
    if (!underPath(value, authority, replica.basePath)) continue;
    return rebased(prefix, value.slice(authority + replica.basePath.length));
  }
  return null;
}

const SLASH = 0x2f;

/** `value` at `at` continues with `path` and then a path, query or fragment boundary (or ends). */
function underPath(value: string, at: number, path: string): boolean {
  if (!value.startsWith(path, at)) return false;
  const next = value.charCodeAt(at + path.length);
  return Number.isNaN(next) || next === SLASH || next === 0x3f || next === 0x23; // end, '/', '?', '#'
}

/** What follows the replica's base path (a path, a query, or nothing), under the route's prefix. */
function rebased(prefix: string, rest: string): string {
  if (rest.charCodeAt(0) === SLASH) return prefix + rest;
  // `?x`, `#x` or nothing after the base path: the route's own root.
  return (prefix === '' ? '/' : prefix) + rest;
}
