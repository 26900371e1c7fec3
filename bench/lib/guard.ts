// On a shared machine another job can land on the proxy's core in the middle of a round and
// make one target look slow. Each measurement is watched: when processes that are not the
// bench's used more than a threshold of CPU during it, it is repeated, within a time budget
// so that the whole run still ends on time. What could not be repeated is counted and
// reported, never hidden.

import type { ForeignCpu } from './cpu.js';
import { log } from './log.js';

export interface Guarded<T> {
  readonly value: T;
  /** CPU used by other processes during the kept attempt, % of one core. */
  readonly foreign_cpu_pct: number;
  readonly disturbed: boolean;
  readonly repeats: number;
}

export class Guard {
  readonly #foreign: ForeignCpu;
  readonly #thresholdPct: number;
  #budgetSeconds: number;
  repeats = 0;
  disturbed = 0;

  constructor(foreign: ForeignCpu, thresholdPct: number, budgetSeconds: number) {
    this.#foreign = foreign;
    this.#thresholdPct = thresholdPct;
    this.#budgetSeconds = budgetSeconds;
  }

  async run<T>(label: string, seconds: number, fn: () => Promise<T>): Promise<Guarded<T>> {
    let repeats = 0;
    for (;;) {
      this.#foreign.start();
      const value = await fn();
      const pct = this.#foreign.percent();
      const disturbed = pct > this.#thresholdPct;
      if (!disturbed || this.#budgetSeconds < seconds) {
        if (disturbed) {
          this.disturbed++;
          log(`${label}: other processes used ${Math.round(pct)}% of a core during it and the repeat budget is spent; kept, flagged`);
        }
        return { value, foreign_cpu_pct: pct, disturbed, repeats };
      }
      log(`${label}: other processes used ${Math.round(pct)}% of a core during it; repeating`);
      this.#budgetSeconds -= seconds;
      this.repeats++;
      repeats++;
    }
  }
}
