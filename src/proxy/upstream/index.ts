export { coalescesWithHead, UpstreamConnection, upstreamTransport, type UpstreamHandler, type UpstreamTransport } from './connection.js';
export { UpstreamPool, type PoolOptions, type PoolWaiter } from './pool.js';
export { ResponseParser, ParseError, type ResponseSink } from './response-parser.js';
export { HeaderLines } from './header-lines.js';
