// The node front end's listener: a net.Server (a tls.Server with listen.tls) on a listening
// socket of this worker's own (reuseport.ts: each worker binds the port with SO_REUSEPORT,
// as uWS does, and the kernel spreads connections), its connections, and their idle timeout.
// Over TLS a connection is handed on once its handshake is done: its handle is Node's
// TLSWrap, a StreamBase like the TCP handle, read and written through the same calls.

import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { TLS12_SUITES, type TlsFiles } from '../listener.js';
import type { ClientHandler, ClientResponse } from './client.js';
import { refreshDate } from './client-output.js';
import { advanceTick, HttpConnection, type ConnectionOwner } from './http-connection.js';

export interface HttpServerOptions {
  /** By method as sent ('GET'); `other` takes the rest. */
  readonly handlers: ReadonlyMap<string, ClientHandler>;
  readonly other: ClientHandler;
  /** Answers a request that cannot be parsed with `status`; the connection closes after. */
  readonly malformed: (res: ClientResponse, status: number, message: string) => void;
  /**
   * A connection waiting this long for its client's bytes (between requests, or in a head
   * or an upload nothing answers yet) is closed (config listen.client_idle_timeout_ms).
   */
  readonly idleTimeoutMs: number;
  /** A request head not whole this long after its first byte is answered 408 (config listen.client_header_timeout_ms). */
  readonly headTimeoutMs: number;
  /** HTTPS (config listen.tls); null: plain HTTP. A TLS handshake gets headTimeoutMs too. */
  readonly tls: TlsFiles | null;
}

/** The certificate and key as the files hold them now (read again at each reload), the uws front end's TLS 1.2 suites (TLS 1.3's are OpenSSL's defaults). Throws when they cannot be read. */
function secureContextOptions(tls: TlsFiles): SecureContextOptions {
  return { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), minVersion: tls.minVersion, ciphers: TLS12_SUITES };
}

/** A new context has keys of its own: each worker's are set to the ones all workers share. */
function shareTicketKeys(server: TlsServer, tls: TlsFiles): void {
  server.setTicketKeys(Buffer.from(tls.ticketKeys));
}

const SWEEP_MS = 1000;

export class HttpServer implements ConnectionOwner {
  readonly handlers: ReadonlyMap<string, ClientHandler>;
  readonly other: ClientHandler;
  readonly malformed: (res: ClientResponse, status: number, message: string) => void;
  readonly #idleTicks: number;
  readonly #idleTimeoutMs: number;
  readonly #headTicks: number;
  readonly #headTimeoutMs: number;
  readonly #server: Server | TlsServer;
  readonly #tls: TlsFiles | null;
  readonly #connections = new Set<HttpConnection>();
  #sweep: NodeJS.Timeout | null = null;
  #draining = false;

  constructor(options: HttpServerOptions) {
    this.handlers = options.handlers;
    this.other = options.other;
    this.malformed = options.malformed;
    this.#idleTicks = Math.max(1, Math.ceil(options.idleTimeoutMs / SWEEP_MS));
    this.#idleTimeoutMs = options.idleTimeoutMs;
    this.#headTicks = Math.max(1, Math.ceil(options.headTimeoutMs / SWEEP_MS));
    this.#headTimeoutMs = options.headTimeoutMs;
    this.#tls = options.tls;
    const accept = (socket: Socket): void => {
      const conn = new HttpConnection(this, socket);
      conn.draining = this.#draining;
      this.#connections.add(conn);
    };
    this.#server = options.tls === null
      ? createServer({ noDelay: true }, accept)
      : createTlsServer({ ...secureContextOptions(options.tls), noDelay: true, ALPNProtocols: ['http/1.1'], handshakeTimeout: options.headTimeoutMs }, accept);
    // A handshake that fails (a plain-HTTP client, a protocol or suite refused) ends its
    // socket; Node would log nothing either, and the server must not fail for it.
    if (options.tls !== null) {
      shareTicketKeys(this.#server as TlsServer, options.tls);
      this.#server.on('tlsClientError', (_err: Error, socket: TLSSocket) => socket.destroy());
    }
  }

  /**
   * Reads the certificate files again for the connections accepted from now on; those open
   * keep theirs. Returns why it could not (the files do not load): the one in use then stays.
   */
  reload(): string | null {
    if (this.#tls === null) return 'the gateway port has no TLS';
    try {
      (this.#server as TlsServer).setSecureContext(secureContextOptions(this.#tls));
      shareTicketKeys(this.#server as TlsServer, this.#tls);
    } catch (err) {
      return `${this.#tls.certFile} and ${this.#tls.keyFile} do not load as a certificate chain and its key (${(err as Error).message})`;
    }
    return null;
  }

  /** Listens on the bound socket `fd`, which it then owns (and closes at stopAccepting). */
  listen(fd: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = this.#server;
      server.once('error', reject);
      server.listen({ fd, backlog: 4096 }, () => {
        server.off('error', reject);
        this.#sweep = setInterval(() => this.#expire(), SWEEP_MS);
        this.#sweep.unref();
        resolve();
      });
    });
  }

  remove(conn: HttpConnection): void {
    this.#connections.delete(conn);
  }

  get connections(): number {
    return this.#connections.size;
  }

  /**
   * The gateway drains (shutdown.drain_delay_ms): every response from now on says
   * `connection: close` and ends its connection, so that keep-alive clients reconnect (to
   * another instance, once the balancer has taken this one out) instead of sending on a
   * connection the end of the delay closes under them (a reset they cannot safely retry).
   */
  drain(): void {
    this.#draining = true;
    for (const conn of this.#connections) conn.draining = true;
  }

  /** Stops accepting; idle connections close now, busy ones after their response. */
  stopAccepting(): void {
    this.#server.close();
    for (const conn of this.#connections) conn.drain();
  }

  /** Drops every connection. */
  close(): void {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#server.close();
    for (const conn of this.#connections) conn.destroy();
  }

  #expire(): void {
    refreshDate();
    const now = advanceTick();
    const limit = this.#idleTicks;
    const headLimit = this.#headTicks;
    // A read stamps the tick it falls in, however late in it: only more than `limit` ticks
    // since then are `limit` whole sweeps of silence (at limit 1, `>=` would close a
    // connection whose bytes arrived a moment before this sweep).
    for (const conn of this.#connections) {
      if (conn.expiring && now - conn.lastTick > limit) conn.idleTimedOut(this.#idleTimeoutMs);
      else if (conn.headSince >= 0 && now - conn.headSince > headLimit) conn.headTimedOut(this.#headTimeoutMs);
    }
  }
}
