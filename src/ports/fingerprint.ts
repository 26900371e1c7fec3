// What a model server was started with, as one digest kept in its replica record: a gateway
// restarted after a crash adopts a server it finds running only when its deployment would
// start the very same one now (a changed command, args, model or env means a restart).
// A digest, not the values: a deployment's env may hold a token, and records are plain files.

import { createHash } from 'node:crypto';
import type { ReplicaProcessOptions } from './replica-options.js';

/**
 * argv, env and cwd define the process. The inherited environment (`baseEnv`) is left out:
 * it changes with the shell or unit a gateway is started from (SHLVL, OLDPWD, ...), which
 * is no reason to restart every server.
 */
export function launchFingerprint(options: Pick<ReplicaProcessOptions, 'argv' | 'env' | 'cwd'>): string {
  const env = Object.entries(options.env ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(JSON.stringify([options.argv, env, options.cwd ?? null])).digest('hex');
}
