// A connection to an `https://` remote: TLS over the public net.Socket API (the
// stream_handle shortcut reads and writes the TCP stream itself, under any TLS layer, so it
// cannot carry TLS). Only pools of such remotes make these; local replicas, and `http://`
// remotes, keep the thread's transport.
//
// The certificate is checked against Node's CA store, plus NODE_EXTRA_CA_CERTS (a private
// CA), with the URL's host name as SNI and for the name check. A failed handshake is a
// failed connect: nothing of the request was sent, so it may go to another replica.
//
// A new connection resumes the pool's last TLS session (as Node's https.Agent and nginx's
// proxy_ssl_session_reuse do): without it every connection past the first paid a full
// handshake, a certificate chain and a key exchange (an extra round trip to a distant
// provider, and the gateway's CPU for each connection a burst opens). One session per
// pool (per origin), the latest the server gave; a handshake that fails drops it.

import { isIP, type Socket } from 'node:net';
import { connect } from 'node:tls';
import type { PoolLike } from './base-connection.js';
import { NetSocketConnection } from './net-socket-connection.js';

/** A pool of `https://` connections: it keeps the TLS session its connections resume. */
export interface TlsPoolLike extends PoolLike {
  tlsSession: Buffer | null;
}

export class TlsSocketConnection extends NetSocketConnection {
  protected override dial(pool: TlsPoolLike): Socket {
    const socket = connect({
      host: pool.host, port: pool.port, ALPNProtocols: ['http/1.1'],
      // SNI takes a host name only (RFC 6066 3); an address is checked against the certificate's IP SANs.
      ...(isIP(pool.host) === 0 ? { servername: pool.host } : {}),
      ...(pool.tlsSession !== null ? { session: pool.tlsSession } : {}),
    });
    socket.setNoDelay(true);
    // TLS 1.3 sends its tickets after the handshake, one or more: the last one is kept.
    socket.on('session', (session: Buffer) => {
      pool.tlsSession = session;
    });
    // A session the server no longer takes only costs a full handshake; after an error (a
    // failed handshake: the server changed its certificate, or is another server now) the
    // next connection starts afresh, as Node's https.Agent evicts its session on one.
    socket.on('error', () => {
      pool.tlsSession = null;
    });
    return socket;
  }

  protected override get connectEvent(): 'connect' | 'secureConnect' {
    return 'secureConnect';
  }
}
