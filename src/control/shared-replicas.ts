// Instances on one host that share a Redis run one set of servers for a deployment that
// may hibernate (scale.min_replicas 0): waking it starts one server however many
// instances hold requests for it. The instance that takes the deployment's lease runs the
// servers and publishes their ports; the others route to those ports (as loopback
// replicas without a process) and tell it when they last served the deployment, so that
// it does not hibernate what another instance still uses. Across hosts nothing is shared:
// each host runs its own servers, as a pod runs its own GPU's.

import { hostname } from 'node:os';
import type { DesiredStateStore } from '../state/index.js';

/** An owner that stops renewing (killed, cut from Redis) loses the lease and its record after this long. */
const LEASE_TTL_MS = 15_000;
/** How often an owner renews its lease and record. */
export const OWNER_RENEW_MS = 5_000;
/** Activity records outlive the longest idle timeout that matters here. */
const ACTIVITY_TTL_MS = 24 * 3_600_000;

export interface SharedServer {
  readonly port: number;
  readonly ready: boolean;
}

/** What an owner publishes: the ports of the servers it runs for the deployment. */
export interface SharedServers {
  readonly owner: string;
  readonly servers: readonly SharedServer[];
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

  publish(id: string, servers: readonly SharedServer[]): Promise<void> {
    return this.#store.putShared(this.#name('shared-servers', id), this.instance, JSON.stringify({ at: Date.now(), servers }), LEASE_TTL_MS);
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
      best = { owner, servers: doc.servers, at: doc.at };
    }
    return best === null ? null : { owner: best.owner, servers: best.servers };
  }

  /** This instance served `id` just now. */
  touch(id: string): Promise<void> {
    return this.#store.putShared(this.#name('active', id), this.instance, String(Date.now()), ACTIVITY_TTL_MS);
  }

  /** When another instance last served `id` (ms since the epoch); 0: never. */
  async lastActive(id: string): Promise<number> {
    let last = 0;
    for (const [holder, at] of Object.entries(await this.#store.loadShared(this.#name('active', id)))) {
      if (holder !== this.instance) last = Math.max(last, Number(at) || 0);
    }
    return last;
  }

  #name(kind: string, id: string): string {
    return `${kind}:${this.#group}:${id}`;
  }
}

function parseRecord(json: string): { at: number; servers: SharedServer[] } | null {
  try {
    const doc = JSON.parse(json) as { at?: unknown; servers?: unknown };
    if (typeof doc.at !== 'number' || !Array.isArray(doc.servers)) return null;
    const servers = doc.servers.filter((s): s is SharedServer => typeof s === 'object' && s !== null && Number.isInteger((s as SharedServer).port) && typeof (s as SharedServer).ready === 'boolean');
    return { at: doc.at, servers };
  } catch {
    return null;
  }
}
