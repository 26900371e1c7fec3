// Hibernates deployments nobody uses (scale.min_replicas 0): every second it looks at what
// the workers count for each such deployment (requests arrived, in flight, waiting), and one
// that has seen none of them for idle_timeout_s is hibernated. The workers count arrivals in
// shared memory (DeploymentCounters.arrive), so the watch sends them nothing and asks them
// nothing.

import type { DeploymentCounters } from '../balancer/index.js';
import type { Logger } from '../telemetry/index.js';
import type { DeploymentManager } from './deployments.js';
import type { SlotAllocator } from './slots.js';

export interface IdleWatchOptions {
  readonly manager: DeploymentManager;
  readonly counters: DeploymentCounters;
  readonly slots: SlotAllocator;
  readonly logger: Logger;
  /** Requests in flight get this long to finish before the replicas stop. */
  readonly graceMs: number;
  readonly intervalMs?: number;
}

export class IdleWatch {
  readonly #o: IdleWatchOptions;
  /** Per deployment: the arrivals count last seen, and when it last showed activity. */
  readonly #seen = new Map<string, { arrivals: number; activeAt: number }>();
  #timer: NodeJS.Timeout | null = null;

  constructor(options: IdleWatchOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => this.tick(Date.now()), this.#o.intervalMs ?? 1_000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  tick(now: number): void {
    const { manager, counters, slots } = this.#o;
    const watched = new Set<string>();
    for (const d of manager.list()) {
      if (d.spec.scale.min_replicas !== 0 || d.state !== 'ready' || d.scaling) continue;
      watched.add(d.id);
      const arrivals = counters.arrivals(d.slot);
      const busy = counters.queueLength(d.slot) > 0 || d.replicas.some((r) => slots.inflight(r.slot) > 0);
      const seen = this.#seen.get(d.id);
      // Watched from the moment it is ready: a deployment that just woke has its full idle time.
      if (seen === undefined || seen.arrivals !== arrivals || busy) {
        this.#seen.set(d.id, { arrivals, activeAt: now });
        continue;
      }
      const idleMs = now - seen.activeAt;
      if (idleMs < d.spec.scale.idle_timeout_s * 1000) continue;
      this.#seen.delete(d.id);
      manager.hibernate(d.id, `no request for ${Math.round(idleMs / 1000)} s`, this.#o.graceMs).catch((err: unknown) => {
        this.#o.logger.error({ deployment: d.id, err }, 'hibernation failed');
      });
    }
    for (const id of this.#seen.keys()) if (!watched.has(id)) this.#seen.delete(id);
  }
}
