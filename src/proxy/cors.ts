// CORS at the front door (config listen.cors_origins): a page or a browser extension that
// calls the root's OpenAI and Ollama endpoints sends a preflight first (a JSON POST is never
// a "simple" request), which no deployment can answer (it names no model). The gateway
// answers it, as Ollama's server does for the origins it allows (protocols.md: OLLAMA_ORIGINS),
// and marks the root's answers to an allowed origin as readable by it. A model server's own
// Access-Control-* headers never reach a client at the root: the browser never sees two, and a
// page of another origin, whose "simple" POST (text/plain) needs no preflight, cannot read an
// answer its server would let any origin read (llama-cpp-python's and vLLM's reflect every
// Origin, with credentials). Path routes are left to their servers. No credentials mode: the browser sends no cookie, a page sends its key.

import { forwardedHeader } from './headers.js';

/** The request headers a preflight may ask for: a list of header names. */
const HEADER_LIST = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;
/** What the page may read of an answer besides the CORS-safelisted headers. */
const EXPOSED = 'x-request-id, x-sluice-cache, x-sluice-version, x-sluice-served-by, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset';
const MAX_AGE_S = 600;

export class CorsPolicy {
  readonly #exact = new Set<string>();
  readonly #patterns: RegExp[] = [];

  /** `origins`: exact origins, or patterns whose `*` stands for any text (`http://localhost:*`, `chrome-extension://*`, `*`). */
  constructor(origins: readonly string[]) {
    for (const o of origins) {
      if (!o.includes('*')) this.#exact.add(o.toLowerCase());
      else this.#patterns.push(new RegExp(`^${o.toLowerCase().split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`));
    }
  }

  /** The request's Origin (ClientHead.origin) when this policy allows it; null when it sent none or one not allowed. */
  allowed(origin: string): string | null {
    return origin !== '' && this.#allows(origin) ? origin : null;
  }

  #allows(origin: string): boolean {
    const o = origin.toLowerCase();
    if (this.#exact.has(o)) return true;
    for (const p of this.#patterns) if (p.test(o)) return true;
    return false;
  }
}

/** The headers of an answer to an allowed origin. */
export function corsHeaders(origin: string): Array<readonly [string, string]> {
  return [['access-control-allow-origin', origin], ['access-control-expose-headers', EXPOSED], ['vary', 'Origin']];
}

/** The same as the head's text (`\r\nname: value` each, as the gateway's own lines go in: Exchange #endHead). */
export function corsLines(origin: string): string {
  return `\r\naccess-control-allow-origin: ${origin}\r\naccess-control-expose-headers: ${EXPOSED}\r\nvary: Origin`;
}

/**
 * The answer to a preflight from an allowed origin: the methods the front door takes, the
 * headers the request asked for (when they are a list of names), for MAX_AGE_S. Null when the
 * asked headers are not a list of names.
 */
export function preflightHeaders(origin: string, headerLines: string): Array<readonly [string, string]> | null {
  const asked = forwardedHeader(headerLines, 'access-control-request-headers');
  if (asked !== '' && !HEADER_LIST.test(asked)) return null;
  return [
    ['access-control-allow-origin', origin],
    ['access-control-allow-methods', 'GET, HEAD, POST, OPTIONS'],
    ...(asked === '' ? [] : [['access-control-allow-headers', asked] as const]),
    ['access-control-max-age', String(MAX_AGE_S)],
    ['vary', 'Origin, Access-Control-Request-Headers'],
  ];
}
