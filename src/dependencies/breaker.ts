// Circuit breakers around the gateway's own calls to the services it depends on (Redis for
// rate limits, the shared cache and the desired state; the MLflow registry). When a
// dependency keeps failing, its breaker opens and calls fail at once instead of each
// waiting for a dead or hung service; after reset_timeout_ms one call goes through as a
// probe, and its success closes the breaker. What a failure means does not change: every
// caller keeps its own answer to a failed call (fail-open or fail-closed rate limits, a
// cache miss, a 503 from the admin API), and an open breaker is one more failed call.
//
// opossum does the counting (a rolling window of successes and failures). Each thread keeps
// its own breakers (one per worker per use on the data plane: a worker's calls never wait
// for another's); their states and counts are summed or maxed at scrape time. The replicas'
// breakers are another thing (balancer/breaker.ts: shared memory, one view across workers,
// on the hot path of every request).

import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { DependencyBreakerConfig as BreakerSettings } from '../config/index.js';
import { SluiceError } from '../errors/index.js';

/** The values of sluice_breaker_state, the replicas' breakers (balancer/breaker.ts), so that one dashboard legend reads both. */
export const enum BreakerState {
  Closed = 0,
  Open = 1,
  HalfOpen = 2,
}

/** Of two workers' views of one breaker, the worse: open, then half-open (probing), then closed. */
export function worseState(a: BreakerState, b: BreakerState): BreakerState {
  if (a === BreakerState.Open || b === BreakerState.Open) return BreakerState.Open;
  return a === BreakerState.HalfOpen || b === BreakerState.HalfOpen ? BreakerState.HalfOpen : BreakerState.Closed;
}

/** One breaker's state and its counts since it was made, as a worker posts it to the control plane. */
export interface BreakerSnapshot {
  readonly dependency: string;
  readonly use: string;
  readonly state: BreakerState;
  /** Times it went to each state (open, half_open, closed). */
  readonly opened: number;
  readonly halfOpened: number;
  readonly closed: number;
  readonly successes: number;
  /** Calls that failed (the client's own timeouts included). */
  readonly failures: number;
  /** Calls refused at once because the breaker was open (or half-open with its probe out). */
  readonly rejected: number;
}

/** A call refused because its dependency's breaker is open: it was not made. */
export class CircuitOpenError extends SluiceError {
  /** Sent with the admin API's answer: the next probe is at most reset_timeout_ms away. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(dependency: string, use: string, resetTimeoutMs: number) {
    super(
      'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN',
      `${dependency} (${use}) is failing: its circuit breaker is open, calls fail at once until a probe succeeds (one every ${resetTimeoutMs} ms)`,
      { dependency, use },
    );
    this.name = 'CircuitOpenError';
    this.headers = { 'retry-after': String(Math.max(1, Math.ceil(resetTimeoutMs / 1000))) };
  }
}

/** The rolling window's buckets. */
const WINDOW_BUCKETS = 10;

/** Where a breaker says that its dependency went down and came back (a pino logger). */
export interface BreakerLog {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
}

/**
 * One dependency use behind a breaker. `action` is the call (bound once: fire() passes its
 * arguments through, so a caller on the data plane allocates no closure per call);
 * `isFailure` tells a failing dependency from an answer that is an error (an MLflow 404),
 * which counts as a success.
 */
export class DependencyBreaker<A extends unknown[], R> {
  readonly dependency: string;
  readonly use: string;
  readonly #breaker: CircuitBreaker<A, R>;
  #opened = 0;
  #halfOpened = 0;
  #closed = 0;
  #successes = 0;
  #failures = 0;
  #rejected = 0;

  constructor(dependency: string, use: string, settings: BreakerSettings, action: (...args: A) => Promise<R>, isFailure?: (err: unknown) => boolean, log?: BreakerLog) {
    this.dependency = dependency;
    this.use = use;
    // The window's buckets turn on our timer, so that a breaker that closes can empty it:
    // opossum keeps the failures that opened it, and one more failure after the recovery
    // would open it again at once.
    const rotation = new EventEmitter();
    const rotate = setInterval(() => rotation.emit('rotate'), settings.rolling_window_ms / WINDOW_BUCKETS);
    rotate.unref();
    const breaker = new CircuitBreaker<A, R>(action, {
      name: `${dependency}:${use}`,
      rotateBucketController: rotation,
      // Every client has its own timeout (ioredis commandTimeout, fetch's signal): a second
      // timer per call here would only duplicate it.
      timeout: false,
      errorThresholdPercentage: settings.error_threshold_percentage,
      volumeThreshold: settings.volume_threshold,
      resetTimeout: settings.reset_timeout_ms,
      rollingCountTimeout: settings.rolling_window_ms,
      rollingCountBuckets: WINDOW_BUCKETS,
      // No latency percentiles nor snapshot events: nobody reads them.
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      ...(isFailure === undefined ? {} : { errorFilter: (err: Error) => !isFailure(err) }),
    });
    // The open breaker's rejection becomes a typed error; a failed call's error passes as is.
    // (Only on the failure path: a successful call never reaches it.)
    breaker.fallback((...argsAndError: unknown[]) => {
      const err = argsAndError[argsAndError.length - 1] as { code?: unknown };
      throw err.code === 'EOPENBREAKER' ? new CircuitOpenError(dependency, use, settings.reset_timeout_ms) : err;
    });
    // One line when it goes down and one when it is back: a failed probe opens it again
    // every reset_timeout_ms, which is no news.
    let down = false;
    breaker.on('open', () => {
      this.#opened++;
      if (down) return;
      down = true;
      log?.warn({ dependency, use, reset_timeout_ms: settings.reset_timeout_ms }, 'dependency failing: circuit breaker open, its calls fail at once until a probe succeeds');
    });
    breaker.on('halfOpen', () => this.#halfOpened++);
    breaker.on('close', () => {
      for (let i = 0; i < WINDOW_BUCKETS; i++) rotation.emit('rotate');
      this.#closed++;
      down = false;
      log?.info({ dependency, use }, 'dependency answers again: circuit breaker closed');
    });
    breaker.on('success', () => this.#successes++);
    breaker.on('failure', () => this.#failures++);
    breaker.on('reject', () => this.#rejected++);
    this.#breaker = breaker;
  }

  /** Makes the call, or rejects at once with CircuitOpenError while the breaker is open. */
  fire(...args: A): Promise<R> {
    return this.#breaker.fire(...args);
  }

  get state(): BreakerState {
    const b = this.#breaker;
    return b.opened ? BreakerState.Open : b.halfOpen ? BreakerState.HalfOpen : BreakerState.Closed;
  }

  snapshot(): BreakerSnapshot {
    return {
      dependency: this.dependency, use: this.use, state: this.state,
      opened: this.#opened, halfOpened: this.#halfOpened, closed: this.#closed,
      successes: this.#successes, failures: this.#failures, rejected: this.#rejected,
    };
  }

}

/** A breaker whose argument is the call itself: for clients with many kinds of calls (a state store). */
export type CallBreaker = DependencyBreaker<[() => Promise<unknown>], unknown>;

const runCall = (call: () => Promise<unknown>): Promise<unknown> => call();

/**
 * The breakers of one thread, so that /metrics finds them all. Wrapping one more dependency:
 * `breakers.add(dependency, use, settings, action)` (or `breakers.forCalls(...)` and
 * `guarded(breaker, () => client.call())`), with its settings in config `dependencies`.
 */
export class DependencyBreakers {
  readonly #all: Array<DependencyBreaker<never[], unknown>> = [];
  readonly #log: BreakerLog | undefined;

  constructor(log?: BreakerLog) {
    this.#log = log;
  }

  add<A extends unknown[], R>(dependency: string, use: string, settings: BreakerSettings, action: (...args: A) => Promise<R>, isFailure?: (err: unknown) => boolean): DependencyBreaker<A, R> {
    const b = new DependencyBreaker(dependency, use, settings, action, isFailure, this.#log);
    this.#all.push(b as unknown as DependencyBreaker<never[], unknown>);
    return b;
  }

  forCalls(dependency: string, use: string, settings: BreakerSettings, isFailure?: (err: unknown) => boolean): CallBreaker {
    return this.add(dependency, use, settings, runCall, isFailure);
  }

  snapshot(): BreakerSnapshot[] {
    return this.#all.map((b) => b.snapshot());
  }
}

/** `call` through a CallBreaker, typed as the call. */
export function guarded<T>(breaker: CallBreaker, call: () => Promise<T>): Promise<T> {
  return breaker.fire(call) as Promise<T>;
}
