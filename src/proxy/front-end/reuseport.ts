// Each data-plane worker's own listening socket on the shared gateway port, for the front
// end built on net.Server. The workers share the port through SO_REUSEPORT (the kernel
// spreads new connections over their sockets), which Node 20's listen() cannot set: its
// reusePort option came in 22.12. Nor can the workers share one listening fd: each thread's
// handle would close it, the second close hitting whatever number the first one freed.
// So the Node-API addon native/reuseport.c (built by scripts/build-native.sh) makes a bound,
// not yet listening, SO_REUSEPORT socket per worker, and the worker hands its fd to
// `net.createServer(...).listen({ fd })`: Node wraps it in a TCP handle, calls listen(2)
// and closes the fd when the server closes.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';

interface ReusePortAddon {
  /** A bound, not listening, SO_REUSEPORT TCP socket's fd; throws an Error with an errno `code`. */
  bind(host: string, port: number): number;
}

/** Relative to the package root, for the messages. */
const ADDON = 'native/build/reuseport.node';
// The package root is three levels up from both src/proxy/front-end/reuseport.ts (run from
// source, as the tests do) and dist/proxy/front-end/reuseport.js (built).
const ADDON_PATH = fileURLToPath(new URL(`../../../${ADDON}`, import.meta.url));

let addon: ReusePortAddon | undefined;
let loadError: string | null | undefined;

/** Loads the addon once; after it, exactly one of `addon` and `loadError` is set. */
function load(): void {
  if (loadError !== undefined) return;
  if (!existsSync(ADDON_PATH)) {
    loadError = `${ADDON} is missing: run bash scripts/build-native.sh`;
    return;
  }
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as ReusePortAddon;
    loadError = null;
  } catch (err) {
    loadError = `${ADDON} failed to load (${(err as Error).message}): rebuild it with bash scripts/build-native.sh`;
  }
}

/**
 * Null when the addon loaded, else why not: the node front end refuses to start with this
 * message rather than fail at its first listen.
 */
export function reusePortLoadError(): string | null {
  load();
  return loadError!;
}

/**
 * A new TCP socket bound to host:port with SO_REUSEPORT (and SO_REUSEADDR), not listening:
 * its fd, for `server.listen({ fd })`, which then owns it. A caller that does not hand it
 * to a server must close it (fs.closeSync). 'localhost' is 127.0.0.1; other names are
 * refused (no resolver here: a name may resolve to several addresses). `::` is dual-stack.
 * Throws the bind's failure with its errno name as `code` (EADDRINUSE when a socket without
 * SO_REUSEPORT holds the port).
 */
export function reusePortSocket(host: string, port: number): number {
  const address = host === 'localhost' ? '127.0.0.1' : host;
  if (isIP(address) === 0) {
    throw Object.assign(new Error(`listen.host must be an IP address for the node front end, not ${JSON.stringify(host)}`), { code: 'EINVAL' });
  }
  load();
  if (addon === undefined) throw new Error(loadError!);
  return addon.bind(address, port);
}
