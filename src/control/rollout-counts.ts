// The request counts a rollout analyses, from every instance sharing the state: each
// instance publishes its own (summed over its workers) for the models under rollout, and
// the one analysing reads them all. With a file store there is one instance: its own.

import type { DesiredStateStore } from '../state/index.js';
import type { Logger, StatsSnapshot } from '../telemetry/index.js';
import type { WindowCounts } from './rollout.js';

export interface RolloutCountsOptions {
  readonly store: DesiredStateStore;
  /** This instance's name in the shared counts. */
  readonly instance: string;
  /** This instance's request stats, summed over its workers, by deployment id. */
  readonly local: () => Promise<Map<string, StatsSnapshot>>;
  /** The deployment ids of a model. */
  readonly deploymentsOf: (model: string) => string[];
  readonly logger: Logger;
}

/** Counts older than this are an instance that stopped: left out. */
const STALE_MS = 10_000;

export class RolloutCounts {
  readonly #o: RolloutCountsOptions;

  constructor(options: RolloutCountsOptions) {
    this.#o = options;
  }

  /**
   * Cumulative counts of `model`'s deployments by `<deployment>@<instance>`: this instance's
   * now, the others' as last published, each `at` on this machine's clock.
   */
  async of(model: string): Promise<Map<string, WindowCounts>> {
    const out = new Map<string, WindowCounts>();
    const ids = new Set(this.#o.deploymentsOf(model));
    const local = await this.#o.local();
    const now = Date.now();
    for (const [id, s] of local) if (ids.has(id)) out.set(`${id}@${this.#o.instance}`, { ...countsOf(s), at: now });
    const others = Object.entries(await this.#o.store.loadShared(`rollout-stats:${model}`)).filter(([instance]) => instance !== this.#o.instance);
    if (others.length === 0) return out;
    // Their stamps are the store's clock (publish): how far it is from this machine's.
    const storeNow = await this.#o.store.time();
    const ahead = storeNow - Date.now();
    for (const [instance, json] of others) {
      try {
        const doc = JSON.parse(json) as { at: number; deployments: Record<string, Omit<WindowCounts, 'at'>> };
        if (storeNow - doc.at > STALE_MS) continue;
        for (const [id, counts] of Object.entries(doc.deployments)) out.set(`${id}@${instance}`, { ...counts, at: doc.at - ahead });
      } catch {
        this.#o.logger.warn({ model, instance }, 'unreadable rollout counts from another instance: left out');
      }
    }
    return out;
  }

  /** Publishes this instance's counts of the models under rollout, for whichever instance analyses them. */
  async publish(models: readonly string[]): Promise<void> {
    if (models.length === 0 || this.#o.store.kind !== 'redis') return;
    const local = await this.#o.local();
    // Stamped by the store's clock, which every instance reads alike, not this machine's:
    // one whose clock is behind would have its counts judged stale, and left out.
    const at = await this.#o.store.time();
    for (const model of models) {
      const deployments: Record<string, Omit<WindowCounts, 'at'>> = {};
      for (const id of this.#o.deploymentsOf(model)) {
        const s = local.get(id);
        if (s !== undefined) deployments[id] = countsOf(s);
      }
      await this.#o.store.putShared(`rollout-stats:${model}`, this.#o.instance, JSON.stringify({ at, deployments }), STALE_MS * 6);
    }
  }
}

function countsOf(s: StatsSnapshot): Omit<WindowCounts, 'at'> {
  return { codes: s.codes, failedAfterHead: s.failedAfterHead, cacheHits: s.cacheHits, fineBuckets: s.fineBuckets, fineTtfbBuckets: s.fineTtfbBuckets };
}
