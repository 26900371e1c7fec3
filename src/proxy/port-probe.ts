// The workers' listening sockets share the gateway port through SO_REUSEPORT (the node front
// end's addon, uSockets for uWS), and Linux lets any socket of the same user with that option
// join the group: a second gateway started on the port would bind without an error and take
// part of the connections. A socket without SO_REUSEPORT cannot bind where any socket
// listens, whatever its options (0.0.0.0 and a dual-stack :: included), so the first worker
// binds and listens one (Node's own listen: SO_REUSEADDR alone, so connections left in
// TIME_WAIT do not refuse a restart), closes it and binds its group socket right after.
// Two gateways would have to start within that gap to both succeed.

import { createServer } from 'node:net';

/**
 * Resolves once nothing listens on host:port, with the port free again: the caller binds its
 * SO_REUSEPORT socket next, in the same tick. Rejects with the listen error (EADDRINUSE when
 * any socket, SO_REUSEPORT or not, listens there).
 */
export function probePort(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    // 'localhost' is 127.0.0.1, as the node front end takes it; `::` is dual stack, as the front ends' sockets are.
    probe.listen({ host: host === 'localhost' ? '127.0.0.1' : host, port, ipv6Only: false }, () => {
      // uv_close closes the fd at once; only the 'close' event waits for the next tick.
      probe.close();
      resolve();
    });
  });
}
