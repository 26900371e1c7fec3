// A connection to an `https://` remote: TLS over the public net.Socket API (the
// stream_handle shortcut reads and writes the TCP stream itself, under any TLS layer, so it
// cannot carry TLS). Only pools of such remotes make these; local replicas, and `http://`
// remotes, keep the thread's transport.
//
// The certificate is checked against Node's CA store, plus NODE_EXTRA_CA_CERTS (a private
// CA), with the URL's host name as SNI and for the name check. A failed handshake is a
// failed connect: nothing of the request was sent, so it may go to another replica.

import { isIP, type Socket } from 'node:net';
import { connect } from 'node:tls';
import type { PoolLike } from './base-connection.js';
import { NetSocketConnection } from './net-socket-connection.js';

export class TlsSocketConnection extends NetSocketConnection {
  protected override dial(pool: PoolLike): Socket {
    const socket = connect({
      host: pool.host, port: pool.port, ALPNProtocols: ['http/1.1'],
      // SNI takes a host name only (RFC 6066 3); an address is checked against the certificate's IP SANs.
      ...(isIP(pool.host) === 0 ? { servername: pool.host } : {}),
    });
    socket.setNoDelay(true);
    return socket;
  }

  protected override get connectEvent(): 'connect' | 'secureConnect' {
    return 'secureConnect';
  }
}
