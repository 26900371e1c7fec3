// API keys on a deployment that requires them. The key itself was looked up by digest when
// the request was routed (the upstream head depends on it); this filter only decides.

import { presentedKey } from '../../policy/index.js';
import type { Exchange } from '../exchange.js';
import type { ClientHead } from '../headers.js';
import { FilterStatus, type RequestFilter } from './filter.js';

const WWW_AUTHENTICATE = Object.freeze([['www-authenticate', 'Bearer'] as const]);

export class AuthFilter implements RequestFilter<Exchange> {
  onHead(ex: Exchange, head: ClientHead): FilterStatus {
    const key = ex.key;
    if (key === undefined) {
      const presented = presentedKey(head.authorization, head.xApiKey) !== '';
      ex.reject('SLUICE_ERR_UNAUTHORIZED', presented ? 'invalid API key' : `${ex.route.id} needs an API key (Authorization: Bearer <key> or x-api-key)`, WWW_AUTHENTICATE);
      return FilterStatus.Answered;
    }
    if (!key.scope.allows(ex.route.id, ex.route.model)) {
      ex.reject('SLUICE_ERR_FORBIDDEN', `API key '${key.name}' may not call ${ex.route.id}`);
      return FilterStatus.Answered;
    }
    return FilterStatus.Continue;
  }
}
