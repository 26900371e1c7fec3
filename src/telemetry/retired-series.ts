// An undeployed deployment's last figures, kept in /metrics for a while after its drain has
// ended. Its series left with the workers' stats at once, so what its last requests (those
// finished during the drain, after the last scrape) added was never scraped: a counter's
// final increments lost, as if those requests had not happened.

import type { StatsSnapshot } from './request-stats.js';

interface Retired {
  readonly stats: StatsSnapshot | undefined;
  readonly replicaCostUsd: number;
  readonly until: number;
}

export class RetiredSeries {
  readonly #retired = new Map<string, Retired>();

  /** `keepMs`: config metrics.retired_series_ms. */
  constructor(readonly keepMs: number) {}

  /** `stats`: its figures summed over the workers, read just before they drop them. */
  keep(id: string, stats: StatsSnapshot | undefined, replicaCostUsd: number, now: number): void {
    this.#retired.set(id, { stats, replicaCostUsd, until: now + this.keepMs });
  }

  /**
   * Adds the kept figures of deployments that are not live to the live ones (a deployment
   * made anew under the same id starts its counters again, as after a restart).
   */
  addTo(stats: Map<string, StatsSnapshot>, replicaCostUsd: Map<string, number>, now: number): void {
    for (const [id, r] of this.#retired) {
      if (r.until <= now) {
        this.#retired.delete(id);
        continue;
      }
      if (stats.has(id) || replicaCostUsd.has(id)) continue;
      if (r.stats !== undefined) stats.set(id, r.stats);
      replicaCostUsd.set(id, r.replicaCostUsd);
    }
  }
}
