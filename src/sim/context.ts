// What the protocol modules may see of the running simulator. Kept apart from server.ts
// so that the route modules and the server do not import each other.

import type { ErrorStyle, Exchange } from './http.js';
import type { ModelSet } from './models.js';
import type { SimOptions, Tunables } from './options.js';
import type { SimStats } from './stats.js';

export interface SimContext {
  readonly options: SimOptions;
  /** Current snapshot; replaced (never mutated) by `POST /_sim/config`. */
  readonly tunables: Tunables;
  readonly stats: SimStats;
  readonly models: ModelSet;
  /** Models "loaded" by a request, name -> expiry (epoch ms), for `/api/ps`. */
  readonly loaded: Map<string, number>;
  /** Replaces the tunables snapshot. */
  configure(next: Tunables): void;
  /** `crash_after` reached: stop this exchange and exit the process with code 1. */
  crash(ex: Exchange, tokensSent: number): void;
  /** One JSON line on stderr (when `logEvents`). */
  logEvent(event: Record<string, unknown>): void;
}

export type Handler = (sim: SimContext, ex: Exchange) => void;

export interface Route {
  /** Handler per HTTP method; a path with no handler for the method answers 405. */
  readonly methods: Readonly<Record<string, Handler>>;
  /** Generation and invocation routes: subject to `status` and `error_rate` injection. */
  readonly generation: boolean;
  readonly style: ErrorStyle;
}
