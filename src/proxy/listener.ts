// A worker's listening app: uWS's plain App, or an SSLApp whose certificate can be replaced
// while connections are open. uWS cannot swap the SSL_CTX of an app, so a reload builds a new
// SSLApp with the same handlers, listens with it on the same port beside the old one
// (uSockets sets SO_REUSEPORT on every listen socket unless given
// LIBUS_LISTEN_EXCLUSIVE_PORT, as the workers' shared port already relies on), then closes
// only the old listen socket: the old app's connections go on with the certificate they
// were opened with, until they end.

import type { AppOptions, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { TlsVersion } from '../config/index.js';
import { TLS12_SUITES } from '../tls-suites.js';
import type { UwsModule } from './uws.js';

/** What a worker needs to build its SSLApp: the PEM files, which uSockets reads itself. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly minVersion: TlsVersion;
  /**
   * Session ticket keys (48 bytes), the same for every worker, so that a client resumes its
   * session on whichever worker takes its next connection; made once per start, as nginx's
   * are (node front end only: uWS.js offers no call for them).
   */
  readonly ticketKeys: Uint8Array;
}

// TLS 1.2 suites, for both front ends and the admin port (see tls-suites.ts).
export { TLS12_SUITES };
// uSockets fixes the minimum version at TLS 1.2 (SSL_CTX_set_min_proto_version in
// create_ssl_context_from_options) and the binding has no option to raise it. PSK suites
// alone leave a TLS 1.2 handshake nothing to agree on (BoringSSL selects them only for a
// server with a PSK callback, which uSockets never sets), so it fails with
// handshake_failure, while TLS 1.3, whose suites the list does not touch, goes on.
const NO_TLS12_SUITE = 'PSK';

function sslOptions(tls: TlsFiles): AppOptions {
  return { cert_file_name: tls.certFile, key_file_name: tls.keyFile, ssl_ciphers: tls.minVersion === 'TLSv1.3' ? NO_TLS12_SUITE : TLS12_SUITES };
}

export class Listener {
  readonly #uws: UwsModule;
  readonly #tls: TlsFiles | null;
  readonly #routes: (app: TemplatedApp) => void;
  readonly #host: string;
  readonly #port: number;
  #app: TemplatedApp;
  #socket: us_listen_socket | null = null;
  /**
   * Apps a reload replaced, closed only at stop: uWS tells nothing of an app's open
   * connections, and a stream may outlive any delay. Each costs a few KiB once they are gone.
   */
  readonly #retired: TemplatedApp[] = [];

  /**
   * `routes` registers the handlers on an app, again on each reload's. Throws when the
   * certificate does not load.
   */
  constructor(uws: UwsModule, tls: TlsFiles | null, host: string, port: number, routes: (app: TemplatedApp) => void) {
    this.#uws = uws;
    this.#tls = tls;
    this.#host = host;
    this.#port = port;
    this.#routes = routes;
    this.#app = this.#build();
  }

  /** Starts accepting; false when the port cannot be bound. */
  listen(): boolean {
    this.#socket = this.#listen(this.#app);
    return this.#socket !== null;
  }

  /**
   * Re-reads the certificate files into a new app that takes over the port. Returns why it
   * could not (the files do not load, the port cannot be bound): the app in use then stays.
   */
  reload(): string | null {
    if (this.#tls === null) return 'the gateway port has no TLS';
    if (this.#socket === null) return 'the gateway port is not listening';
    let app: TemplatedApp;
    try {
      app = this.#build();
    } catch (err) {
      return `${this.#tls.certFile} and ${this.#tls.keyFile} do not load as a certificate chain and its key (uWS: ${String(err)})`;
    }
    const socket = this.#listen(app);
    if (socket === null) {
      closeApp(app);
      return `cannot listen again on ${this.#host}:${this.#port}`;
    }
    this.#uws.us_listen_socket_close(this.#socket);
    this.#retired.push(this.#app);
    this.#app = app;
    this.#socket = socket;
    return null;
  }

  /** Stops accepting; open connections go on. */
  stopAccepting(): void {
    if (this.#socket !== null) this.#uws.us_listen_socket_close(this.#socket);
    this.#socket = null;
  }

  /**
   * Closes every connection of every app, idle keep-alive ones included: they are open
   * handles of the uWS loop, and a thread exiting over them aborts the whole process.
   */
  close(): void {
    for (const app of this.#retired) closeApp(app);
    closeApp(this.#app);
  }

  #build(): TemplatedApp {
    const app = this.#tls === null ? this.#uws.App() : this.#uws.SSLApp(sslOptions(this.#tls));
    this.#routes(app);
    return app;
  }

  #listen(app: TemplatedApp): us_listen_socket | null {
    // The binding calls back before listen() returns (AppWrapper.h: "Immediate call").
    let socket: us_listen_socket | null = null;
    app.listen(this.#host, this.#port, (token) => {
      if (token) socket = token;
    });
    return socket;
  }
}

/** `close()` exists on the 20.30 binary's app but is missing from its typings. */
function closeApp(app: TemplatedApp): void {
  (app as unknown as { close(): void }).close();
}
