// A model server's redirect names its own address: `http://127.0.0.1:8001/docs/` (built
// from the Host the gateway sent) or `/docs/` (a path of its own, which the client resolves
// against the gateway's URL, where `/docs/` routes nowhere). A client must be sent where
// the gateway serves that resource: under the route's prefix (`/<model>-<version>` or the
// alias `/<model>`; nothing at the root), in place of the replica's origin and base path.
// nginx does the first half by default (`proxy_redirect default`); the second half is what
// a path-prefix route needs too. A Location elsewhere (another host, a path outside a
// remote's base path, a relative reference) goes as sent.
// A remote URL's own query (`?key=...`: the deployment's credential, which the gateway puts
// first in every request's query) comes back in such a redirect when the server keeps the
// query it was asked with (Starlette's trailing-slash redirect, so vLLM's): it is taken out,
// since the client must never see it, and the gateway puts it in again when it follows.

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
    if (basePath === '') {
      const own = withoutOwnQuery(value, replicas);
      return prefix === '' ? (own === value ? null : own) : prefix + own;
    }
    return underPath(value, 0, basePath) ? rebased(prefix, withoutOwnQuery(value.slice(basePath.length), replicas)) : null;
  }
  const lower = value.toLowerCase();
  for (const replica of replicas) {
    const authority = replica.origin.length - replica.basePath.length;
    if (!lower.startsWith(replica.origin.slice(0, authority).toLowerCase())) continue;
    if (!underPath(value, authority, replica.basePath)) continue;
    return rebased(prefix, withoutOwnQuery(value.slice(authority + replica.basePath.length), replicas));
  }
  return null;
}

/**
 * `rest` (a path, a query, a fragment) without a replica's own query where its query begins
 * with it (as the gateway sent it: first, then `&` and the client's parameters).
 */
function withoutOwnQuery(rest: string, replicas: readonly ReplicaRoute[]): string {
  const q = rest.indexOf('?');
  if (q < 0) return rest;
  for (const replica of replicas) {
    const own = replica.query;
    if (own === '' || !rest.startsWith(own, q + 1)) continue;
    const after = q + 1 + own.length;
    const next = rest.charCodeAt(after);
    // `&` and the client's parameters, or nothing more (the end, or a fragment).
    if (next === 0x26) return rest.slice(0, q + 1) + rest.slice(after + 1);
    if (Number.isNaN(next) || next === 0x23) return rest.slice(0, q) + rest.slice(after);
  }
  return rest;
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
