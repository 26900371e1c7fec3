// The `net_socket` transport: only the public net.Socket API. Reads arrive as 'data' events
// (a fresh Buffer each, so nothing is shared between reads), writes go through the
// Writable, pause()/resume() stop and restart reading. Slower than the stream_handle path
// by Node's stream machinery per read and write; the behaviour is the same.

import type { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { BaseConnection, type PoolLike } from './base-connection.js';

export class NetSocketConnection extends BaseConnection {
  protected override open(pool: PoolLike): Socket {
    const socket = this.dial(pool);
    // A paused connection gets no more 'data' events (BaseConnection.pause pauses the socket).
    socket.on('data', (chunk: Buffer) => this.onRead(chunk.length, chunk));
    return socket;
  }

  /** Runs inside the constructor (see open): a subclass's own fields are not initialised yet. */
  protected dial(pool: PoolLike): Socket {
    return connect({ host: pool.host, port: pool.port, noDelay: true });
  }

  protected override writeAtOnce(data: string | Buffer, shared: boolean): boolean {
    return this.writeThroughSocket(data, shared);
  }
}
