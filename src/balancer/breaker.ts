// Circuit breakers and consecutive-failure ejection per replica, with their state in a
// SharedArrayBuffer so that every worker thread sees one breaker per replica, not one
// each (DESIGN.md: N workers must never mean N separate views of a broken replica).
//
// Semantics follow opossum (error percentage over a rolling window with a volume
// threshold, reset timeout, one half-open probe) plus Envoy's consecutive-5xx outlier
// detection, so that a replica refusing connections is out after a few requests.
// opossum itself wraps each call in a promise and keeps its state per instance (per
// thread); on this hot path neither fits.

export interface BreakerOptions {
  /** Consecutive failures that open the breaker at once (Envoy consecutive_5xx). */
  readonly consecutiveFailures: number;
  /** Error percentage over the rolling window that opens the breaker... */
  readonly errorThresholdPercentage: number;
  /** ...once at least this many requests were seen in the window. */
  readonly volumeThreshold: number;
  readonly rollingWindowMs: number;
  /** How long an open breaker stays open before one probe request is let through. */
  readonly resetTimeoutMs: number;
}

export const enum BreakerState {
  Closed = 0,
  Open = 1,
  HalfOpen = 2,
}

export const enum Admission {
  Deny = 0,
  Allow = 1,
  /** The one request that decides whether a half-open breaker closes. */
  Probe = 2,
}

const BUCKETS = 10;
// Int32 fields per slot.
const I_LOCK = 0;
const I_STATE = 1;
const I_CONSECUTIVE = 2;
const I_PROBE = 3;
const I_OPENS = 4;
const I_BUCKET_BASE = 5; // BUCKETS pairs of (successes, failures)
const INTS = I_BUCKET_BASE + BUCKETS * 2;
// Float64 fields per slot.
const F_OPENED_AT = 0;
const F_BUCKET_EPOCH = 1; // index of the window bucket last written (time / bucketMs)
const FLOATS = 2;

/**
 * The shared memory for breakers of up to `slots` replicas. Created by the control plane,
 * handed to workers with the route table's SharedArrayBuffers; slot = replica slot.
 */
export class BreakerBoard {
  readonly ints: Int32Array;
  readonly floats: Float64Array;

  constructor(buffers: { ints: SharedArrayBuffer; floats: SharedArrayBuffer }) {
    this.ints = new Int32Array(buffers.ints);
    this.floats = new Float64Array(buffers.floats);
  }

  static allocate(slots: number): { ints: SharedArrayBuffer; floats: SharedArrayBuffer } {
    return {
      ints: new SharedArrayBuffer(slots * INTS * Int32Array.BYTES_PER_ELEMENT),
      floats: new SharedArrayBuffer(slots * FLOATS * Float64Array.BYTES_PER_ELEMENT),
    };
  }

  /** A slot starts closed and clean when a replica takes it. */
  reset(slot: number): void {
    const base = slot * INTS;
    this.#lock(base);
    for (let i = 1; i < INTS; i++) this.ints[base + i] = 0;
    this.floats[slot * FLOATS + F_OPENED_AT] = 0;
    this.floats[slot * FLOATS + F_BUCKET_EPOCH] = 0;
    this.#unlock(base);
  }

  state(slot: number): BreakerState {
    return Atomics.load(this.ints, slot * INTS + I_STATE) as BreakerState;
  }

  /** Times the breaker opened since the slot was reset (for metrics). */
  opens(slot: number): number {
    return Atomics.load(this.ints, slot * INTS + I_OPENS);
  }

  /**
   * May a request go to this replica now? Closed: Allow. Open: Deny until the reset
   * timeout has passed; then exactly one caller (across all workers) gets the Probe.
   */
  allow(slot: number, now: number, o: BreakerOptions): Admission {
    const base = slot * INTS;
    const state = Atomics.load(this.ints, base + I_STATE);
    if (state === BreakerState.Closed) return Admission.Allow;
    if (state === BreakerState.Open) {
      if (now - this.floats[slot * FLOATS + F_OPENED_AT]! < o.resetTimeoutMs) return Admission.Deny;
      if (Atomics.compareExchange(this.ints, base + I_STATE, BreakerState.Open, BreakerState.HalfOpen) !== BreakerState.Open) return Admission.Deny;
      Atomics.store(this.ints, base + I_PROBE, 1);
      return Admission.Probe;
    }
    return Admission.Deny; // half-open: the probe is out; everyone else waits for its verdict
  }

  /** Milliseconds until an open breaker lets its probe through (0 when closed or due). */
  msUntilProbe(slot: number, now: number, o: BreakerOptions): number {
    if (Atomics.load(this.ints, slot * INTS + I_STATE) === BreakerState.Closed) return 0;
    return Math.max(0, o.resetTimeoutMs - (now - this.floats[slot * FLOATS + F_OPENED_AT]!));
  }

  /**
   * The probe ended without a verdict (the client went away, or the gateway cut it after
   * the replica had answered well): reopen with an
   * expired timer so that the next request probes again at once.
   */
  releaseProbe(slot: number): void {
    const base = slot * INTS;
    this.#lock(base);
    if (this.ints[base + I_STATE] === BreakerState.HalfOpen) {
      this.ints[base + I_STATE] = BreakerState.Open;
      this.ints[base + I_PROBE] = 0;
      this.floats[slot * FLOATS + F_OPENED_AT] = Number.NEGATIVE_INFINITY;
    }
    this.#unlock(base);
  }

  onSuccess(slot: number, now: number, o: BreakerOptions): void {
    const base = slot * INTS;
    const ints = this.ints;
    // The common case takes no lock: a closed breaker, no failure streak to reset, and the
    // window's current bucket already in place; one atomic add counts the success. Racing
    // with another worker's roll of the window can lose that one count, which can only
    // make the error percentage look worse, never better.
    if (ints[base + I_STATE] === BreakerState.Closed && ints[base + I_CONSECUTIVE] === 0) {
      const epoch = Math.floor(now / (o.rollingWindowMs / BUCKETS));
      if (epoch === this.floats[slot * FLOATS + F_BUCKET_EPOCH]) {
        Atomics.add(ints, base + I_BUCKET_BASE + (epoch % BUCKETS) * 2, 1);
        return;
      }
    }
    this.#lock(base);
    this.ints[base + I_CONSECUTIVE] = 0;
    this.#record(slot, now, o, 0);
    if (this.ints[base + I_STATE] === BreakerState.HalfOpen) {
      this.ints[base + I_STATE] = BreakerState.Closed;
      this.ints[base + I_PROBE] = 0;
      this.#clearWindow(base);
    }
    this.#unlock(base);
  }

  onFailure(slot: number, now: number, o: BreakerOptions): void {
    const base = slot * INTS;
    this.#lock(base);
    const consecutive = ++this.ints[base + I_CONSECUTIVE]!;
    this.#record(slot, now, o, 1);
    let total = 0;
    let failures = 0;
    for (let b = 0; b < BUCKETS; b++) {
      const f = this.ints[base + I_BUCKET_BASE + b * 2 + 1]!;
      total += this.ints[base + I_BUCKET_BASE + b * 2]! + f;
      failures += f;
    }
    const state = this.ints[base + I_STATE];
    const trip =
      state === BreakerState.HalfOpen ||
      (state === BreakerState.Closed &&
        (consecutive >= o.consecutiveFailures || (total >= o.volumeThreshold && (failures * 100) / total >= o.errorThresholdPercentage)));
    if (trip) this.#open(slot, now);
    this.#unlock(base);
  }

  /**
   * Opens the breaker at once, whatever its counts: a refused connection says the replica
   * is not there (Envoy ejects on a connect failure without waiting for consecutive ones).
   * It is probed back in after the reset timeout, as for any open breaker.
   */
  eject(slot: number, now: number): void {
    const base = slot * INTS;
    this.#lock(base);
    this.ints[base + I_CONSECUTIVE]!++;
    if (this.ints[base + I_STATE] !== BreakerState.Open) this.#open(slot, now);
    this.#unlock(base);
  }

  /** Called with the slot locked. */
  #open(slot: number, now: number): void {
    const base = slot * INTS;
    this.ints[base + I_STATE] = BreakerState.Open;
    this.ints[base + I_PROBE] = 0;
    this.ints[base + I_OPENS]!++;
    this.floats[slot * FLOATS + F_OPENED_AT] = now;
    this.#clearWindow(base);
  }

  /** Adds one outcome to the rolling window (successes need no totals: only a failure can trip). */
  #record(slot: number, now: number, o: BreakerOptions, failed: 0 | 1): void {
    const base = slot * INTS;
    const bucketMs = o.rollingWindowMs / BUCKETS;
    const epoch = Math.floor(now / bucketMs);
    const last = this.floats[slot * FLOATS + F_BUCKET_EPOCH]!;
    // Buckets that rolled out of the window since the last write are zeroed.
    const stale = Math.min(BUCKETS, epoch - last);
    for (let k = 1; k <= stale; k++) {
      const b = (last + k) % BUCKETS;
      this.ints[base + I_BUCKET_BASE + b * 2] = 0;
      this.ints[base + I_BUCKET_BASE + b * 2 + 1] = 0;
    }
    if (stale > 0) this.floats[slot * FLOATS + F_BUCKET_EPOCH] = epoch;
    const cur = epoch % BUCKETS;
    this.ints[base + I_BUCKET_BASE + cur * 2 + failed]!++;
  }

  #clearWindow(base: number): void {
    for (let i = 0; i < BUCKETS * 2; i++) this.ints[base + I_BUCKET_BASE + i] = 0;
    this.ints[base + I_CONSECUTIVE] = 0;
  }

  // A spin lock per slot: the critical sections are a few array writes, and workers are
  // few, so spinning is cheaper than any blocking primitive.
  #lock(base: number): void {
    while (Atomics.compareExchange(this.ints, base + I_LOCK, 0, 1) !== 0);
  }

  #unlock(base: number): void {
    Atomics.store(this.ints, base + I_LOCK, 0);
  }
}
