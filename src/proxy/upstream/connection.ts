// The upstream connection as the rest of the proxy sees it: one class per thread, picked
// once by transport.ts (`stream_handle` or `net_socket`), so call sites stay monomorphic
// and no request or chunk asks which transport it is on.

import { BaseConnection, type PoolLike } from './base-connection.js';
import { NetSocketConnection } from './net-socket-connection.js';
import { StreamHandleConnection } from './stream-handle-connection.js';
import { upstreamTransport } from './transport.js';

export { coalescesWithHead, type PoolLike, type UpstreamHandler } from './base-connection.js';
export { upstreamTransport, type UpstreamTransport } from './transport.js';

/** One keep-alive TCP connection to a replica (see BaseConnection). */
export type UpstreamConnection = BaseConnection;

/** The connection class of this thread's transport: `new UpstreamConnection(pool)`. */
export const UpstreamConnection: new (pool: PoolLike) => UpstreamConnection =
  upstreamTransport === 'stream_handle' ? StreamHandleConnection : NetSocketConnection;
