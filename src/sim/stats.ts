// Counters that tests read through `GET /_sim/stats`. `active` is a gauge of requests in
// flight, so `reset()` leaves it alone: zeroing it would make it go negative as those
// requests end.

export interface Cancellation {
  readonly request_id: string | null;
  readonly path: string;
  readonly at_ms: number;
  readonly tokens_sent: number;
}

export interface StatsJson {
  requests: number;
  active: number;
  completed: number;
  cancelled: number;
  cancellations: Cancellation[];
  errors_injected: number;
}

const KEEP = 100;

export class SimStats {
  requests = 0;
  active = 0;
  completed = 0;
  cancelled = 0;
  errorsInjected = 0;
  // Ring buffer: the last KEEP cancellations without shifting an array on every insert.
  readonly #ring: (Cancellation | undefined)[] = new Array<Cancellation | undefined>(KEEP);
  #next = 0;
  #size = 0;

  addCancellation(c: Cancellation): void {
    this.cancelled++;
    this.#ring[this.#next] = c;
    this.#next = (this.#next + 1) % KEEP;
    if (this.#size < KEEP) this.#size++;
  }

  reset(): void {
    this.requests = 0;
    this.completed = 0;
    this.cancelled = 0;
    this.errorsInjected = 0;
    this.#ring.fill(undefined);
    this.#next = 0;
    this.#size = 0;
  }

  toJSON(): StatsJson {
    const cancellations: Cancellation[] = [];
    const start = (this.#next - this.#size + KEEP) % KEEP;
    for (let i = 0; i < this.#size; i++) cancellations.push(this.#ring[(start + i) % KEEP]!);
    return {
      requests: this.requests,
      active: this.active,
      completed: this.completed,
      cancelled: this.cancelled,
      cancellations,
      errors_injected: this.errorsInjected,
    };
  }
}
