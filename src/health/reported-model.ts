// The name a model server knows its model by, as its OpenAI-compatible API lists it:
// the first id of GET /v1/models (llama-cpp-python lists its --model_alias, else the
// --model path). Clients of a gateway do not know that name; the gateway can.

import { withQuery } from '../target-query.js';
import { endpointOf, getText } from './readiness.js';

/** A model list far larger than this is not one server's. */
const MAX_BYTES = 64 * 1024;

/** The first model id that `url` (a server's base URL) lists, or null when it lists none or does not answer. */
export async function reportedModel(url: string, timeoutMs = 2_000): Promise<string | null> {
  const base = new URL(url);
  const path = withQuery(`${base.pathname.replace(/\/+$/, '')}/v1/models`, base.search.slice(1));
  const answer = await getText(endpointOf(base), path, timeoutMs, MAX_BYTES);
  if (typeof answer === 'string' || answer.status !== 200) return null;
  try {
    const id = (JSON.parse(answer.body) as { data?: Array<{ id?: unknown }> }).data?.[0]?.id;
    return typeof id === 'string' && id !== '' ? id : null;
  } catch {
    return null;
  }
}
