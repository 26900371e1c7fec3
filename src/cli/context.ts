// The options every admin command shares (admin URL, token, --json), read once per command.

import type { Command } from 'commander';
import { AdminClient, DEFAULT_ADMIN_URL } from './admin-client.js';
import { colorsFor, type Colors } from './output.js';

export interface CliContext {
  readonly client: AdminClient;
  /** Print the admin API's JSON (or the command's documented shape) instead of tables. */
  readonly json: boolean;
  /** Colours for stdout and for stderr (each on only for a terminal). */
  readonly out: Colors;
  readonly err: Colors;
}

interface GlobalOptions {
  adminUrl?: string;
  token?: string;
  json?: boolean;
}

export function contextOf(cmd: Command): CliContext {
  const o = cmd.optsWithGlobals<GlobalOptions>();
  const url = o.adminUrl ?? process.env.SLUICE_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  const token = o.token ?? process.env.SLUICE_ADMIN_TOKEN ?? null;
  return { client: new AdminClient(url, token), json: o.json === true, out: colorsFor(process.stdout), err: colorsFor(process.stderr) };
}
