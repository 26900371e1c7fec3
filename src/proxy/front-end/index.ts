// Door of the node front end: sluice's own HTTP/1.1 server on Node's TCP handles, serving
// the gateway the request and response it knows from uWS (client.ts).
export { bytesOf, type ClientHandler, type ClientListener, type ClientRequest, type ClientResponse, type SentHeaders } from './client.js';
export { nodeFrontEndUsable } from './http-connection.js';
export { HttpServer, type HttpServerOptions } from './http-server.js';
export { reusePortLoadError, reusePortSocket } from './reuseport.js';
