// Why a Redis client cannot answer. ioredis tells why a connection failed (refused, reset,
// the password refused) only through its 'error' event; a command meanwhile fails with
// "Connection is closed.", "Reached the max retries per request limit" or "Stream isn't
// writeable", which read the same whether Redis is down or refuses the gateway's password.

import type { Redis } from 'ioredis';
import { SluiceError } from '../errors/index.js';

// The first word of a Redis error reply is its code: these refuse the credentials (or
// their absence). Older servers answer "ERR invalid password".
const AUTH_REFUSED = /^(NOAUTH|WRONGPASS|ERR invalid password)\b/;

/**
 * Listens to `redis`'s connection errors (without a listener ioredis prints a stack trace
 * on every reconnect attempt) and returns what to say of a command that failed: while the
 * client has no connection, why it has none ("authentication failed: WRONGPASS ...",
 * "no connection: connect ECONNREFUSED ..."). Only messages are kept: Redis's do not carry
 * the password, an ioredis error's `command.args` would.
 */
export function connectionFailures(redis: Redis): (err: unknown) => string {
  let broken: string | null = null;
  redis.on('error', (err: Error) => {
    broken = AUTH_REFUSED.test(err.message) ? `authentication failed: ${err.message}` : `no connection: ${err.message}`;
  });
  redis.on('ready', () => {
    broken = null;
  });
  // An open breaker's refusal says so itself.
  return (err) => (broken !== null && redis.status !== 'ready' && !(err instanceof SluiceError) ? broken : err instanceof Error ? err.message : String(err));
}
