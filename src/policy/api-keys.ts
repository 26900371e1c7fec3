// Client API keys. Keys are only ever held as SHA-256 digests: in config (`key_sha256`, or
// `key` replaced by its digest at load), in the state store, in the route table and in
// memory. Logs name a key by its `name` and a short prefix of its digest, never by the key.

// The data plane's auth hashes presented keys through this folder's door.
export { hashKey } from '../api-key-digest.js';

/** What a log line may show of a key: its name and 8 hex digits of its digest. */
export function keyLabel(name: string, digest: string): string {
  return `${name}#${digest.slice(0, 8)}`;
}

/** Which deployments a key may call: ids (`demo-1`), model names (`demo`) or `*`. */
export class KeyScope {
  readonly #all: boolean;
  readonly #names: ReadonlySet<string>;

  constructor(patterns: readonly string[]) {
    this.#all = patterns.includes('*');
    this.#names = new Set(patterns);
  }

  allows(deploymentId: string, model: string): boolean {
    return this.#all || this.#names.has(deploymentId) || this.#names.has(model);
  }
}

/** The start of every key sluice generates: recognisable as sluice's (and never forwarded) even once revoked. */
export const GENERATED_KEY_PREFIX = 'sk-sluice-';

/**
 * The key a client presented: `Authorization: Bearer <key>` or `x-api-key: <key>`. Returns
 * '' when there is none.
 */
export function presentedKey(authorization: string, xApiKey: string): string {
  return xApiKey !== '' ? xApiKey : bearerToken(authorization);
}

/** The token of `Authorization: Bearer <token>`; '' for any other value. */
export function bearerToken(authorization: string): string {
  if (authorization.length > 7 && authorization.slice(0, 7).toLowerCase() === 'bearer ') return authorization.slice(7).trim();
  return '';
}
