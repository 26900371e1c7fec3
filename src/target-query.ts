// A remote URL's own query (`https://x.openai.azure.com/openai?api-version=2024-06-01`)
// goes with every request made to it: requests, health checks, load scrapes. A leaf module:
// the data plane (request heads) and the control plane (health/ targets) both need it.

/**
 * `target` (a path with or without a query) with `query` (no `?`) put first in its query:
 * the URL's parameters come before the client's, so a server that reads a parameter's first
 * value reads the deployment's.
 */
export function withQuery(target: string, query: string): string {
  if (query === '') return target;
  const q = target.indexOf('?');
  if (q < 0) return `${target}?${query}`;
  return q === target.length - 1 ? `${target}${query}` : `${target.slice(0, q + 1)}${query}&${target.slice(q + 1)}`;
}

/** `target` as views, errors and logs show it: a query (which may hold the deployment's key) as `?***`. */
export function shownTarget(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : `${target.slice(0, q)}?***`;
}
