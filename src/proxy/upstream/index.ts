export { coalescesWithHead, UpstreamConnection, type UpstreamHandler } from './connection.js';
export { UpstreamPool, type PoolOptions, type PoolWaiter } from './pool.js';
export { ResponseParser, ParseError, type ResponseSink } from './response-parser.js';
export { HeaderLines } from './header-lines.js';
