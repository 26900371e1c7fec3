// Instances on one host that share a Redis run one set of servers for a deployment that
// may hibernate (scale.min_replicas 0): waking it starts one server however many
// instances hold requests for it. The instance that takes the deployment's lease runs the
// servers and publishes their ports; the others route to those ports (as loopback
// replicas without a process) and report when they last served the deployment and their
// requests in flight and waiting, so that it neither hibernates what another instance
// still uses nor scales on its own load alone. Across hosts nothing is shared:
// each host runs its own servers, as a pod runs its own GPU's.

import { hostname } from 'node:os';
import type { DesiredStateStore } from '../state/index.js';

/** An owner that stops renewing (killed, cut from Redis) loses the lease and its record after this long. */
const LEASE_TTL_MS = 15_000;
/** How often an owner renews its lease and record. */
export const OWNER_RENEW_MS = 5_000;
/** Activity records outlive the longest idle timeout (idle_timeout_s is at most a year). */
const ACTIVITY_TTL_MS = 366 * 86_400_000;
/** A load reported longer ago than this is over: an instance reports only while it is busy. */
const LOAD_FRESH_MS = 3_000;
/**
 * How much older than the activity it reports a report may be: a borrower reports at its
 * autoscaler's tick (every second while busy), and a loaded machine runs ticks late. The
 * owner counts a report this much past idle_timeout_s as activity still.
 */
export const REPORT_SLACK_MS = 3_000;

export interface SharedServer {
  readonly port: number;
  readonly ready: boolean;
  /** Its server did not start, or crashed too often: nothing is coming (absent: false). */
  readonly failed?: boolean;
}

/** What an owner publishes: the ports of the servers it runs for the deployment. */
export interface SharedServers {
  readonly owner: string;
  readonly servers: readonly SharedServer[];
  /** Why its servers failed, in one line (the deployment's `failure` on the owner); absent: none. */
  readonly failure?: string;
}

export class ReplicaSharing {
  readonly instance: string;
  readonly #store: DesiredStateStore;
  readonly #group: string;

  constructor(store: DesiredStateStore, instance: string, group = hostname()) {
    this.#store = store;
    this.instance = instance;
    this.#group = group;
  }

  /** Takes (or renews) the right to run `id`'s servers on this host: false while another instance has it. */
  claim(id: string): Promise<boolean> {
    return this.#store.lease(this.#name('servers', id), this.instance, LEASE_TTL_MS);
  }

  release(id: string): Promise<void> {
    return this.#store.releaseLease(this.#name('servers', id), this.instance);
  }

  publish(id: string, servers: readonly SharedServer[], failure: string | null): Promise<void> {
    return this.#store.putShared(this.#name('shared-servers', id), this.instance, JSON.stringify({ at: Date.now(), servers, ...(failure === null ? {} : { failure }) }), LEASE_TTL_MS);
  }

  unpublish(id: string): Promise<void> {
    return this.#store.removeShared(this.#name('shared-servers', id), this.instance);
  }

  /** The servers another instance runs for `id`, from its newest fresh record; null: none. */
  async servers(id: string): Promise<SharedServers | null> {
    let best: (SharedServers & { at: number }) | null = null;
    const now = Date.now();
    for (const [owner, json] of Object.entries(await this.#store.loadShared(this.#name('shared-servers', id)))) {
      if (owner === this.instance) continue;
      const doc = parseRecord(json);
      if (doc === null || now - doc.at > LEASE_TTL_MS || (best !== null && best.at >= doc.at)) continue;
      best = { owner, servers: doc.servers, at: doc.at, ...(doc.failure === undefined ? {} : { failure: doc.failure }) };
    }
    if (best === null) return null;
    const { at: _at, ...record } = best;
    return record;
  }

  /** This instance served `id` just now, and has `load` of its requests in flight or waiting. */
  touch(id: string, load: number): Promise<void> {
    return this.#store.putShared(this.#name('active', id), this.instance, JSON.stringify({ at: Date.now(), load }), ACTIVITY_TTL_MS);
  }

  /** The other instances' use of `id`: when one last served it (ms since the epoch; 0: never) and their load now. */
  async activity(id: string): Promise<{ lastActive: number; load: number }> {
    let lastActive = 0;
    let load = 0;
    const now = Date.now();
    for (const [holder, json] of Object.entries(await this.#store.loadShared(this.#name('active', id)))) {
      if (holder === this.instance) continue;
      const doc = parseActivity(json);
      if (doc === null) continue;
      lastActive = Math.max(lastActive, doc.at);
      if (now - doc.at <= LOAD_FRESH_MS) load += doc.load;
    }
    return { lastActive, load };
  }

  #name(kind: string, id: string): string {
    return `${kind}:${this.#group}:${id}`;
  }
}

function parseActivity(json: string): { at: number; load: number } | null {
  try {
    const doc = JSON.parse(json) as { at?: unknown; load?: unknown };
    return typeof doc.at === 'number' && typeof doc.load === 'number' ? { at: doc.at, load: doc.load } : null;
  } catch {
    return null;
  }
}

function parseRecord(json: string): { at: number; servers: SharedServer[]; failure?: string } | null {
  try {
    const doc = JSON.parse(json) as { at?: unknown; servers?: unknown; failure?: unknown };
    if (typeof doc.at !== 'number' || !Array.isArray(doc.servers)) return null;
    const servers = doc.servers.filter((s): s is SharedServer => typeof s === 'object' && s !== null && Number.isInteger((s as SharedServer).port) && typeof (s as SharedServer).ready === 'boolean');
    return { at: doc.at, servers, ...(typeof doc.failure === 'string' ? { failure: doc.failure } : {}) };
  } catch {
    return null;
  }
}
