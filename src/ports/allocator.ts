// Hands out ports for local model servers. A port is claimed synchronously before the
// bind check awaits, so concurrent acquire() calls can never pick the same one; the bind
// check then skips ports that another program on the machine already listens on.

import { createServer } from 'node:net';
import { SluiceError } from '../errors/index.js';
import { checkInt, checkString } from './validate.js';

export interface PortAllocatorOptions {
  readonly from?: number;
  readonly to?: number;
  /** Address the bind check uses; model servers listen on loopback. */
  readonly host?: string;
}

export const PORT_RANGE_DEFAULTS = Object.freeze({ from: 8001, to: 8100, host: '127.0.0.1' });

export class PortAllocator {
  readonly from: number;
  readonly to: number;
  readonly host: string;
  readonly #held = new Set<number>();
  // Scanning resumes after the last port handed out, so a port just released is the last
  // to be reused: a client of the old server may still be connecting to it.
  #cursor: number;

  constructor(options: PortAllocatorOptions = {}) {
    this.from = checkInt('from', options.from ?? PORT_RANGE_DEFAULTS.from, 1, 65_535);
    this.to = checkInt('to', options.to ?? PORT_RANGE_DEFAULTS.to, this.from, 65_535);
    this.host = checkString('host', options.host ?? PORT_RANGE_DEFAULTS.host, false);
    this.#cursor = this.from;
  }

  /** A port in the range that nobody holds and that can be bound right now. */
  async acquire(): Promise<number> {
    const size = this.to - this.from + 1;
    for (let i = 0; i < size; i++) {
      const port = this.#cursor;
      this.#cursor = port === this.to ? this.from : port + 1;
      if (this.#held.has(port)) continue;
      this.#held.add(port);
      if (await canBind(port, this.host)) return port;
      this.#held.delete(port);
    }
    throw new SluiceError('SLUICE_ERR_NO_FREE_PORT', `no free port left in ${this.from}-${this.to}`, {
      from: this.from, to: this.to,
    });
  }

  /**
   * Marks a port as held without a bind check: for a server adopted from a previous
   * gateway run, which is the one listening there. Any valid port, so that a server
   * survives a change of range. Throws SLUICE_ERR_CONFLICT if already held.
   */
  reserve(port: number): void {
    checkInt('port', port, 1, 65_535);
    if (this.#held.has(port)) {
      throw new SluiceError('SLUICE_ERR_CONFLICT', `port ${port} is already held`, { field: 'port', port });
    }
    this.#held.add(port);
  }

  /** Whether no other program listens on `port` now (a port reserved unchecked may have been taken since). */
  bindable(port: number): Promise<boolean> {
    return canBind(port, this.host);
  }

  /** Returns a port to the pool; releasing a port that is not held does nothing. */
  release(port: number): void {
    this.#held.delete(port);
  }

  held(): number[] {
    return [...this.#held].sort((a, b) => a - b);
  }
}

/** Binds a throwaway listener; any error (EADDRINUSE, EACCES) means "not usable". */
function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
