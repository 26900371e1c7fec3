// Builds the data plane's route table from the control plane's view of deployments.

import type { UpstreamOptions } from '../config/index.js';
import type { AliasSnapshot, DeploymentSnapshot, ReplicaSnapshot, RouteTableSnapshot } from '../proxy/index.js';

export interface RoutableReplica extends ReplicaSnapshot {
  readonly ready: boolean;
}

export interface RoutableDeployment {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  /** False while draining: the route disappears for new requests at once. */
  readonly routable: boolean;
  readonly replicas: readonly RoutableReplica[];
  readonly upstream: UpstreamOptions;
  readonly maxBodyBytes: number;
}

/**
 * `traffic` gives weights per model and version. A model without an entry sends all of
 * its alias traffic to the version declared last (the newest), so `/<model>/` works
 * before anyone has set weights.
 */
export function buildRouteSnapshot(
  version: number,
  deployments: readonly RoutableDeployment[],
  traffic: Readonly<Record<string, Readonly<Record<string, number>>>>,
): RouteTableSnapshot {
  const out: DeploymentSnapshot[] = [];
  const byModel = new Map<string, RoutableDeployment[]>();
  for (const d of deployments) {
    if (!d.routable) continue;
    out.push({
      id: d.id, model: d.model, version: d.version, upstream: d.upstream, maxBodyBytes: d.maxBodyBytes,
      replicas: d.replicas.filter((r) => r.ready).map(({ id, host, port, basePath, slot }) => ({ id, host, port, basePath, slot })),
    });
    const list = byModel.get(d.model) ?? [];
    list.push(d);
    byModel.set(d.model, list);
  }
  const aliases: AliasSnapshot[] = [];
  for (const [model, list] of byModel) {
    const weights = traffic[model];
    const targets = weights === undefined
      ? [{ deployment: list[list.length - 1]!.id, weight: 1 }]
      : list.map((d) => ({ deployment: d.id, weight: weights[d.version] ?? 0 }));
    aliases.push({ model, targets });
  }
  return { version, deployments: out, aliases };
}
