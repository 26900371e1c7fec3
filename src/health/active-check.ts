// Active health checks of one upstream the gateway did not start (a `remote` replica):
// a TCP connect or a GET every interval, with Envoy's thresholds. A new replica is
// `starting` until its first check: one pass makes it healthy (Envoy needs one success
// at start-up too), unhealthy_threshold failures in a row make it unhealthy. Once
// healthy, unhealthy_threshold failures in a row take it out; once unhealthy,
// healthy_threshold passes in a row bring it back.

import { connect } from 'node:net';
import type { HealthCheckConfig } from '../config/index.js';
import { probeDetailed, type Endpoint } from './readiness.js';
import { shownTarget } from '../target-query.js';

export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

export interface HealthCheckTarget extends Endpoint {
  /** GET this path (200 passes); null: a TCP connect. */
  readonly path: string | null;
  /** Sent with the GET (a provider's credential: its health path may need it too). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface HealthCheckView {
  readonly status: HealthStatus;
  /** What is checked: `tcp` or `GET /path`. */
  readonly check: string;
  readonly interval_ms: number;
  readonly checks: number;
  readonly failures: number;
  readonly consecutive_successes: number;
  readonly consecutive_failures: number;
  readonly last_check_at: string | null;
  readonly last_error: string | null;
}

/** Resolves null when the TCP connection opened in time, else why not. */
export function tcpCheck(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`no TCP connection within ${timeoutMs} ms`);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(null);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

export class ActiveHealthCheck {
  readonly #target: HealthCheckTarget;
  readonly #options: HealthCheckConfig;
  readonly #onStatus: (status: HealthStatus) => void;
  #status: HealthStatus = 'starting';
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #checks = 0;
  #failures = 0;
  #successesInRow = 0;
  #failuresInRow = 0;
  #lastCheckAt: number | null = null;
  #lastError: string | null = null;

  /** `onStatus` is called on every change of status, never after stop(). */
  constructor(target: HealthCheckTarget, options: HealthCheckConfig, onStatus: (status: HealthStatus) => void) {
    this.#target = target;
    this.#options = options;
    this.#onStatus = onStatus;
  }

  get status(): HealthStatus {
    return this.#status;
  }

  /** The first check runs at once, the next ones interval_ms after the previous one ended. */
  start(): void {
    if (this.#stopped || this.#timer !== null) return;
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  view(): HealthCheckView {
    const t = this.#target;
    return {
      status: this.#status, check: t.path === null ? 'tcp' : `GET ${shownTarget(t.path)}`, interval_ms: this.#options.interval_ms,
      checks: this.#checks, failures: this.#failures,
      consecutive_successes: this.#successesInRow, consecutive_failures: this.#failuresInRow,
      last_check_at: this.#lastCheckAt === null ? null : new Date(this.#lastCheckAt).toISOString(), last_error: this.#lastError,
    };
  }

  get checks(): number {
    return this.#checks;
  }

  get failures(): number {
    return this.#failures;
  }

  async #run(): Promise<void> {
    const target = this.#target;
    const timeoutMs = this.#options.timeout_ms;
    const error = target.path === null ? await tcpCheck(target.host, target.port, timeoutMs) : await probeDetailed(target, target.path, timeoutMs, target.headers);
    if (this.#stopped) return;
    this.#record(error);
    this.#timer = setTimeout(() => void this.#run(), this.#options.interval_ms);
    this.#timer.unref();
  }

  #record(error: string | null): void {
    this.#checks++;
    this.#lastCheckAt = Date.now();
    let next = this.#status;
    if (error === null) {
      this.#successesInRow++;
      this.#failuresInRow = 0;
      if (this.#status === 'starting' || (this.#status === 'unhealthy' && this.#successesInRow >= this.#options.healthy_threshold)) next = 'healthy';
    } else {
      this.#failures++;
      this.#failuresInRow++;
      this.#successesInRow = 0;
      this.#lastError = error;
      if (this.#failuresInRow >= this.#options.unhealthy_threshold) next = 'unhealthy';
    }
    if (next !== this.#status) {
      this.#status = next;
      this.#onStatus(next);
    }
  }
}
