import { deploymentSchema, validate, type DeploymentConfig } from '../config/index.js';
import { StateError, type DesiredDeployment } from './types.js';

const FORMAT = 1;

export function encodeDesired(deployments: readonly DesiredDeployment[]): string {
  return JSON.stringify({ format: FORMAT, deployments }, null, 2) + '\n';
}

/** Parses and re-validates stored state: a hand-edited or corrupt file fails loudly here. */
export function decodeDesired(text: string, where: string): DesiredDeployment[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new StateError(`${where}: state is not valid JSON (${(err as Error).message}); fix or remove it`);
  }
  const d = doc as { format?: unknown; deployments?: unknown };
  if (typeof doc !== 'object' || doc === null || d.format !== FORMAT || !Array.isArray(d.deployments)) {
    throw new StateError(`${where}: not a sluice state document of format ${FORMAT}`);
  }
  return d.deployments.map((entry: unknown, i: number) => {
    const e = entry as { spec?: unknown; created_at?: unknown };
    try {
      const spec = validate(deploymentSchema, e?.spec, `deployments[${i}].spec`) as DeploymentConfig;
      return { spec, created_at: typeof e.created_at === 'string' ? e.created_at : new Date(0).toISOString() };
    } catch (err) {
      throw new StateError(`${where}: ${(err as Error).message}`);
    }
  });
}
