// API keys on a deployment that requires them. The key itself was looked up by digest when
// the request was routed (the upstream head depends on it); this filter only decides.

import type { ErrorCode } from '../../errors/index.js';
import { presentedKey } from '../../policy/index.js';
import type { Exchange } from '../exchange.js';
import type { ClientHead } from '../headers.js';
import type { KeyRoute } from '../route-table.js';
import { FilterStatus, type RequestFilter } from './filter.js';

export const WWW_AUTHENTICATE = Object.freeze([['www-authenticate', 'Bearer'] as const]);

/** Why a request may not call a deployment that requires keys; null when it may. Module scratch: read it at once. */
export function authRefusal(deployment: string, model: string, key: KeyRoute | undefined, head: ClientHead): { code: ErrorCode; message: string } | null {
  if (key === undefined) {
    const presented = presentedKey(head.authorization, head.xApiKey) !== '';
    refusal.code = 'SLUICE_ERR_UNAUTHORIZED';
    refusal.message = presented ? 'invalid API key' : `${deployment} needs an API key (Authorization: Bearer <key> or x-api-key)`;
    return refusal;
  }
  if (!key.scope.allows(deployment, model)) {
    refusal.code = 'SLUICE_ERR_FORBIDDEN';
    refusal.message = `API key '${key.name}' may not call ${deployment}`;
    return refusal;
  }
  return null;
}

const refusal: { code: ErrorCode; message: string } = { code: 'SLUICE_ERR_UNAUTHORIZED', message: '' };

export class AuthFilter implements RequestFilter<Exchange> {
  onHead(ex: Exchange, head: ClientHead): FilterStatus {
    const refused = authRefusal(ex.route.id, ex.route.model, ex.key, head);
    if (refused === null) return FilterStatus.Continue;
    ex.reject(refused.code, refused.message, refused.code === 'SLUICE_ERR_UNAUTHORIZED' ? WWW_AUTHENTICATE : undefined);
    return FilterStatus.Answered;
  }
}
