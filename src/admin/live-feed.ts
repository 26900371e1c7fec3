// GET /v1/events/stream: what the dashboard shows, pushed as server-sent events. One feed per
// admin server ticks once a second while someone listens, and takes the stats, the
// deployments and every model's traffic once per tick for all of them. Each listener gets
// `stats` every tick, and `deployments` and `models` when they differ from what it last got:
// a listener whose write was refused (a slow client: nothing piles up) gets the change at
// the next tick. A stream lasts `seconds` at most, then ends; the client connects again.

import type { Logger } from '../telemetry/index.js';
import type { ReplyStream } from './server.js';

export interface FeedSources {
  /** GET /v1/stats: cumulative figures per deployment (clients diff two of them for rates). */
  stats(): Promise<unknown>;
  /** GET /v1/deployments. */
  deployments(): unknown;
  /** Every model's traffic view (GET /v1/models) and its events (GET /v1/models/{model}/events). */
  models(): unknown;
}

const TICK_MS = 1_000;
/** A comment line now and then, so that a proxy or the client sees the stream alive when nothing changes. */
const HEARTBEAT_MS = 15_000;
/** How long a browser waits before it connects again (the SSE `retry` field). */
const RETRY_MS = 2_000;

interface Snapshot {
  /** null when the stats could not be taken this tick (the workers are stopping). */
  readonly stats: string | null;
  readonly deployments: string;
  readonly models: string;
}

interface Listener {
  /** What this listener was last sent, to send the others only when they changed. */
  deployments: string;
  models: string;
  readonly out: ReplyStream;
}

export class LiveFeed {
  readonly #sources: FeedSources;
  readonly #logger: Logger;
  readonly #listeners = new Set<Listener>();
  #timer: NodeJS.Timeout | null = null;
  #latest: Snapshot | null = null;

  constructor(sources: FeedSources, logger: Logger) {
    this.#sources = sources;
    this.#logger = logger;
  }

  /** Streams to `out` until it aborts or `seconds` pass. */
  async stream(out: ReplyStream, seconds: number): Promise<void> {
    out.write(`retry: ${RETRY_MS}\n\n`);
    const listener: Listener = { deployments: '', models: '', out };
    this.#listeners.add(listener);
    if (this.#latest !== null) send(listener, this.#latest);
    if (this.#timer === null) this.#schedule(0);
    const heartbeat = setInterval(() => out.write(': keep-alive\n\n'), HEARTBEAT_MS);
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, seconds * 1000);
        out.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    } finally {
      clearInterval(heartbeat);
      this.#listeners.delete(listener);
    }
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => void this.#tick(), ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (this.#listeners.size === 0) {
      this.#timer = null;
      this.#latest = null;
      return;
    }
    try {
      const stats = await this.#sources.stats().then((x) => JSON.stringify(x), () => null);
      this.#latest = { stats, deployments: JSON.stringify(this.#sources.deployments()), models: JSON.stringify(this.#sources.models()) };
      for (const listener of this.#listeners) send(listener, this.#latest);
    } catch (err) {
      this.#logger.warn({ err }, 'the live feed could not take a snapshot');
    }
    // Scheduled after the tick, not on an interval: a slow stats round never overlaps the next.
    this.#schedule(TICK_MS);
  }
}

function send(listener: Listener, s: Snapshot): void {
  const { out } = listener;
  if (s.stats !== null) out.write(event('stats', s.stats));
  if (listener.deployments !== s.deployments && out.write(event('deployments', s.deployments))) listener.deployments = s.deployments;
  if (listener.models !== s.models && out.write(event('models', s.models))) listener.models = s.models;
}

/** One event; JSON.stringify never emits a newline, so the data is one line. */
function event(name: string, json: string): string {
  return `event: ${name}\ndata: ${json}\n\n`;
}
