import { Fifo } from '../../balancer/index.js';
import { UpstreamConnection } from './connection.js';
import { TlsSocketConnection, type TlsPoolLike } from './tls-socket-connection.js';

/** Someone waiting for a connection because the pool is at its limit. */
export interface PoolWaiter {
  /** Called with a connection that is now this waiter's; false if the waiter gave up meanwhile. */
  onConnection(conn: UpstreamConnection): boolean;
}

export interface PoolOptions {
  readonly host: string;
  readonly port: number;
  readonly maxConnections: number;
  readonly idleMs: number;
  /** An `https://` remote: its connections speak TLS. Default false. */
  readonly tls?: boolean;
}

/**
 * Keep-alive connections to one replica (one origin). Idle connections are a LIFO stack so
 * the warmest socket is reused and the coldest ones age out; waiters wait in a FIFO.
 */
export class UpstreamPool implements TlsPoolLike {
  readonly host: string;
  readonly port: number;
  readonly idleMs: number;
  readonly tls: boolean;
  /** `tls`: the session a new connection resumes (TlsSocketConnection); null until the first handshake. */
  tlsSession: Buffer | null = null;
  #max: number;
  readonly #idle: UpstreamConnection[] = [];
  #open = 0;
  readonly #waiters = new Fifo<PoolWaiter>();
  #closed = false;

  constructor(options: PoolOptions) {
    this.host = options.host;
    this.port = options.port;
    this.idleMs = options.idleMs;
    this.tls = options.tls ?? false;
    this.#max = options.maxConnections;
  }

  get openConnections(): number {
    return this.#open;
  }

  get idleConnections(): number {
    return this.#idle.length;
  }

  /** A connection to use now, or null when the caller was queued as a waiter. */
  acquire(waiter: PoolWaiter): UpstreamConnection | null {
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    if (this.#open < this.#max) {
      this.#open++;
      return this.#connect();
    }
    this.#waiters.push(waiter);
    return null;
  }

  release(conn: UpstreamConnection): void {
    if (this.#closed) {
      conn.closeIdle();
      return;
    }
    for (let waiter = this.#waiters.shift(); waiter !== undefined; waiter = this.#waiters.shift()) {
      if (waiter.onConnection(conn)) return;
    }
    this.#idle.push(conn);
  }

  remove(conn: UpstreamConnection): void {
    const i = this.#idle.lastIndexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
    this.#open--;
    // A slot freed up: the oldest waiter gets a fresh connection.
    while (this.#waiters.size > 0 && this.#open < this.#max) {
      const waiter = this.#waiters.shift()!;
      this.#open++;
      const fresh = this.#connect();
      // A new socket starts with idleSince 0: the next sweep stamps it.
      if (!waiter.onConnection(fresh)) this.#idle.push(fresh);
    }
  }

  #connect(): UpstreamConnection {
    return this.tls ? new TlsSocketConnection(this) : new UpstreamConnection(this);
  }

  /**
   * Closes idle sockets older than the keep-alive time (called by the worker's sweep, every
   * 100 ms). A socket is released with idleSince 0 and stamped by the first sweep that
   * finds it idle, so releasing one reads no clock: idle time is measured to a sweep.
   */
  sweep(now: number): void {
    const idle = this.#idle;
    // Released since the last sweep: on top of the stack.
    for (let i = idle.length - 1; i >= 0 && idle[i]!.idleSince === 0; i--) idle[i]!.idleSince = now;
    // The stack's bottom holds the oldest sockets.
    while (idle.length > 0 && now - idle[0]!.idleSince > this.idleMs) idle[0]!.closeIdle();
  }

  /** The replica left the route table: idle sockets close now, busy ones when their response ends. */
  close(): void {
    this.#closed = true;
    while (this.#idle.length > 0) this.#idle[this.#idle.length - 1]!.closeIdle();
  }
}
