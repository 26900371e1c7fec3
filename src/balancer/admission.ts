// Per-deployment counters shared by all workers and the control plane (SharedArrayBuffer):
// queue length across workers, the retry budget, arrivals (for hibernation) and the
// autoscaler's hibernation forecast. Per-replica in-flight counts live in the replica slots.

const I_QUEUE = 0;
const I_LOCK = 1;
const I_EPOCH = 2;
const I_REQ_CUR = 3;
const I_RETRY_CUR = 4;
const I_REQ_PREV = 5;
const I_RETRY_PREV = 6;
/** Requests that arrived, for a deployment that hibernates when idle (the control plane watches it move). */
const I_ARRIVALS = 7;
/** When a deployment that hibernates will, if no request comes (seconds since the epoch, from the autoscaler); 0: not due. */
const I_SLEEPS_AT = 8;
/** The last ticket given to a request that waits for a replica (ReplicaQueue: the oldest is served first, whichever worker holds it). */
const I_TICKET = 9;
const INTS = 10;

/** Takes a replica's in-flight slot if it is under `max` (0 = no limit); atomic across workers. */
export function tryAcquire(inflight: Int32Array, slot: number, max: number): boolean {
  if (max <= 0) {
    Atomics.add(inflight, slot, 1);
    return true;
  }
  for (;;) {
    const v = Atomics.load(inflight, slot);
    if (v >= max) return false;
    if (Atomics.compareExchange(inflight, slot, v, v + 1) === v) return true;
  }
}

/** Ticket `a` was given before ticket `b` (DeploymentCounters.ticket; they wrap around). */
export function ticketOlder(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

export class DeploymentCounters {
  readonly #ints: Int32Array;
  /** Per deployment slot: the queue places this thread holds (WorkerHolds.queues), given back should it die. */
  readonly #held: Int32Array;

  /** `held`: a worker's own WorkerHolds.queues; the control plane, which queues nothing, needs none. */
  constructor(buffer: SharedArrayBuffer, held?: Int32Array) {
    this.#ints = new Int32Array(buffer);
    this.#held = held ?? new Int32Array(this.#ints.length / INTS);
  }

  static allocate(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer(slots * INTS * Int32Array.BYTES_PER_ELEMENT);
  }

  reset(slot: number): void {
    this.#ints.fill(0, slot * INTS, slot * INTS + INTS);
  }

  queueLength(slot: number): number {
    return Atomics.load(this.#ints, slot * INTS + I_QUEUE);
  }

  /** Reserves a place in the deployment's queue (all workers together hold at most `max`). */
  enqueue(slot: number, max: number): boolean {
    const i = slot * INTS + I_QUEUE;
    for (;;) {
      const v = Atomics.load(this.#ints, i);
      if (v >= max) return false;
      if (Atomics.compareExchange(this.#ints, i, v, v + 1) === v) {
        this.#held[slot]!++;
        return true;
      }
    }
  }

  dequeue(slot: number): void {
    Atomics.sub(this.#ints, slot * INTS + I_QUEUE, 1);
    this.#held[slot]!--;
  }

  /** A request's place in the order of those waiting for the deployment's replicas, across workers; never 0 (it wraps: compare with ticketOlder). */
  ticket(slot: number): number {
    const t = (Atomics.add(this.#ints, slot * INTS + I_TICKET, 1) + 1) | 0;
    return t === 0 ? this.ticket(slot) : t;
  }

  /** The places a dead worker held in the queue (WorkerHolds.giveBack). */
  giveBackQueue(slot: number, n: number): void {
    Atomics.sub(this.#ints, slot * INTS + I_QUEUE, n);
  }

  /** A request arrived for a deployment that hibernates when idle. */
  arrive(slot: number): void {
    Atomics.add(this.#ints, slot * INTS + I_ARRIVALS, 1);
  }

  /** The autoscaler's forecast: the deployment hibernates at `seconds` (since the epoch) unless a request comes. */
  setSleepsAt(slot: number, seconds: number): void {
    Atomics.store(this.#ints, slot * INTS + I_SLEEPS_AT, seconds);
  }

  /** Seconds since the epoch; 0: it is not due to hibernate (it never does, or has just woken). */
  sleepsAt(slot: number): number {
    return Atomics.load(this.#ints, slot * INTS + I_SLEEPS_AT);
  }

  /** Requests arrived so far (wraps around: compare for change only). */
  arrivals(slot: number): number {
    return Atomics.load(this.#ints, slot * INTS + I_ARRIVALS);
  }

  /** Counts a request towards the retry budget's window. */
  countRequest(slot: number, now: number, windowMs: number): void {
    const ints = this.#ints;
    // Without the lock while the window need not rotate (nearly always): a rotation racing
    // with this add may lose one count, which only makes the budget a little stricter.
    if ((Math.floor(now / (windowMs / 2)) | 0) === ints[slot * INTS + I_EPOCH]) {
      Atomics.add(ints, slot * INTS + I_REQ_CUR, 1);
      return;
    }
    const base = this.#lockWindow(slot, now, windowMs);
    ints[base + I_REQ_CUR]!++;
    Atomics.store(ints, base + I_LOCK, 0);
  }

  /**
   * May this deployment retry once more? Retries stay under `percent` of the requests of
   * the last window (Envoy's retry budget), with a floor of `minRetries` so that a quiet
   * deployment can still retry at all.
   */
  tryRetry(slot: number, now: number, windowMs: number, percent: number, minRetries = 3): boolean {
    const ints = this.#ints;
    const base = this.#lockWindow(slot, now, windowMs);
    const requests = ints[base + I_REQ_CUR]! + ints[base + I_REQ_PREV]!;
    const retries = ints[base + I_RETRY_CUR]! + ints[base + I_RETRY_PREV]!;
    const ok = retries + 1 <= Math.max(minRetries, (requests * percent) / 100);
    if (ok) ints[base + I_RETRY_CUR]!++;
    Atomics.store(ints, base + I_LOCK, 0);
    return ok;
  }

  /** Locks the slot and rotates its two half windows; the caller unlocks. */
  #lockWindow(slot: number, now: number, windowMs: number): number {
    const ints = this.#ints;
    const base = slot * INTS;
    while (Atomics.compareExchange(ints, base + I_LOCK, 0, 1) !== 0);
    const epoch = Math.floor(now / (windowMs / 2)) | 0;
    const last = ints[base + I_EPOCH]!;
    if (epoch !== last) {
      const shift = epoch - last === 1;
      ints[base + I_REQ_PREV] = shift ? ints[base + I_REQ_CUR]! : 0;
      ints[base + I_RETRY_PREV] = shift ? ints[base + I_RETRY_CUR]! : 0;
      ints[base + I_REQ_CUR] = 0;
      ints[base + I_RETRY_CUR] = 0;
      ints[base + I_EPOCH] = epoch;
    }
    return base;
  }
}
