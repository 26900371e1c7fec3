// Why a Redis client cannot answer, and a connection that stopped answering replaced.
// ioredis tells why a connection failed (refused, reset, the password refused) only through
// its 'error' event; a command meanwhile fails with "Connection is closed.", "Reached the
// max retries per request limit" or "Stream isn't writeable", which read the same whether
// Redis is down or refuses the gateway's password. And a command that times out leaves its
// connection as it is: one whose replies stopped without a reset (a peer gone without a
// word, a route blackholed, a reply cut mid-way) times every command out until the kernel
// gives up on it, about 15 minutes on Linux, though a new connection would be answered.

import type { Redis } from 'ioredis';
import { SluiceError } from '../errors/index.js';

// The first word of a Redis error reply is its code: these refuse the credentials (or
// their absence). Older servers answer "ERR invalid password".
const AUTH_REFUSED = /^(NOAUTH|WRONGPASS|ERR invalid password)\b/;

/** How often a connection's byte counts are looked at, to find one that owes replies and reads nothing. */
const SILENCE_CHECK_MS = 500;

/**
 * Listens to `redis`'s connection errors (without a listener ioredis prints a stack trace
 * on every reconnect attempt) and returns what to say of a command that failed: while the
 * client has no connection, why it has none ("authentication failed: WRONGPASS ...",
 * "no connection: connect ECONNREFUSED ..."). Only messages are kept: Redis's do not carry
 * the password, an ioredis error's `command.args` would.
 *
 * It also connects again when the connection owes replies (bytes were written after the
 * last ones read) and has read nothing for `commandTimeoutMs`: a command on it has timed
 * out by then. A slow Redis still sends replies, late, and keeps its connection.
 */
export function watchConnection(redis: Redis, commandTimeoutMs: number): (err: unknown) => string {
  let broken: string | null = null;
  redis.on('error', (err: Error) => {
    broken = AUTH_REFUSED.test(err.message) ? `authentication failed: ${err.message}` : `no connection: ${err.message}`;
  });
  // Closed by Redis (CLIENT KILL, a restart) or the network without an error: commands fail
  // meanwhile with ioredis's "Stream isn't writeable ..." until the next connect says more.
  redis.on('close', () => {
    broken ??= 'no connection: closed by Redis or the network, connecting again';
  });
  redis.on('ready', () => {
    broken = null;
  });

  let watched: Redis['stream'] | null = null;
  let read = 0;
  let writtenAtRead = 0;
  /** When a check first found bytes written since the last read; 0: none owed. */
  let owedSince = 0;
  const timer = setInterval(() => {
    const stream = redis.stream;
    if (redis.status !== 'ready' || stream === undefined) {
      watched = null;
      return;
    }
    if (stream !== watched || stream.bytesRead !== read) {
      watched = stream;
      read = stream.bytesRead;
      writtenAtRead = stream.bytesWritten;
      owedSince = 0;
      return;
    }
    if (stream.bytesWritten === writtenAtRead) return;
    const now = Date.now();
    if (owedSince === 0) owedSince = now;
    if (now - owedSince < commandTimeoutMs) return;
    broken = `no connection: no reply on it for ${now - owedSince} ms, connecting again`;
    watched = null;
    redis.disconnect(true);
  }, SILENCE_CHECK_MS);
  timer.unref();
  redis.once('end', () => clearInterval(timer));

  // An open breaker's refusal says so itself.
  return (err) => (broken !== null && redis.status !== 'ready' && !(err instanceof SluiceError) ? broken : err instanceof Error ? err.message : String(err));
}
