// The SHA-256 digest a client API key is held as (policy/api-keys.ts says where). A leaf
// module so that config/, which replaces config keys by their digests at load, need not
// import policy/, which imports config/ for its types.

import { createHash } from 'node:crypto';

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
