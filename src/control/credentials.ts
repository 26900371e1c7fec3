// Credentials the gateway adds to a deployment's upstream requests (config `auth`): the
// secret is read from the environment when a route table is built, so it lives in memory
// only, never in config or state files, and never in a log line or an admin view.

import type { UpstreamAuthConfig } from '../config/index.js';

export interface UpstreamCredential {
  /** Header name, lower case. */
  readonly name: string;
  readonly value: string;
}

/** The header to send, or null when the variable is unset or holds what cannot go in a header. */
export function upstreamCredential(auth: UpstreamAuthConfig | undefined): UpstreamCredential | null {
  if (auth === undefined) return null;
  const secret = process.env[auth.env] ?? '';
  // A line break in the value would let it write headers of its own into the request.
  if (secret === '' || /[\r\n\0]/.test(secret)) return null;
  return { name: auth.header.toLowerCase(), value: auth.scheme === null ? secret : `${auth.scheme} ${secret}` };
}
