// Deployment endpoints: the REST API (/v1/deployments) and the deployment service's
// original endpoints (/deploy, /undeploy, /get_*), which keep their paths and meaning.

import { deploymentId, deploymentProblem, deploymentSchema, loopProblem, shadowProblem, MODEL_NAME, RESERVED_NAMES, reservedReason, VERSION_NAME, type Config, type DeploymentConfig } from '../config/index.js';
import type { DeploymentControl, ManagedDeployment } from '../control/index.js';
import type { CallBreaker, DependencyBreakers } from '../dependencies/index.js';
import { SluiceError } from '../errors/index.js';
import { credentialsFromEnv, MlflowRegistry, registryUnavailable } from '../registry/index.js';
import { boolParam, intParam } from './query-params.js';
import { validBody, type AdminReply, type AdminRequest, type AdminServer } from './server.js';

export interface DeploymentsApiContext {
  readonly config: Config;
  readonly deployments: DeploymentControl;
  /** The control plane's breakers: the registry's is one of them. */
  readonly dependencies: DependencyBreakers;
}

const DEFAULT_UNDEPLOY_GRACE_MS = 30_000;

export function registerDeploymentsApi(admin: AdminServer, ctx: DeploymentsApiContext): void {
  const { deployments } = ctx;
  let registry: MlflowRegistry | null = null;
  let breaker: CallBreaker | null = null;
  const getRegistry = (): MlflowRegistry => {
    const uri = ctx.config.mlflow.tracking_uri;
    if (uri === null) throw new SluiceError('SLUICE_ERR_REGISTRY_NOT_CONFIGURED');
    // The config takes a local store (file:, sqlite:) or a databricks: profile, which
    // `mlflow models serve` resolves itself; this client speaks the tracking server's REST API.
    if (!/^https?:/.test(uri)) {
      throw new SluiceError('SLUICE_ERR_REGISTRY_NOT_CONFIGURED', `the registry endpoints need an MLflow tracking server (http or https); mlflow.tracking_uri is a ${uri.split(':')[0]}: store, which only mlflow deployments read (POST /v1/deployments)`);
    }
    const settings = ctx.config.dependencies.mlflow.registry;
    // Made once, even when the URI is refused below on every call.
    breaker ??= ctx.dependencies.forCalls('mlflow', 'registry', settings, registryUnavailable);
    return (registry ??= new MlflowRegistry({ trackingUri: uri, timeoutMs: settings.timeout_ms, breaker, ...credentialsFromEnv(process.env) }));
  };

  admin
    .route('GET', '/v1/deployments', () => ({ body: { deployments: deployments.list().map((d) => deployments.view(d)) } }))
    .route('POST', '/v1/deployments', async (req) => ({ status: 201, body: deployments.view(await deploy(ctx, validBody<DeploymentConfig>(deploymentSchema, await req.json()), req)) }), { query: ['wait'] })
    .route('GET', '/v1/deployments/:id', (req) => ({ body: deployments.view(mustGet(deployments, req.params.id!)) }))
    .route('DELETE', '/v1/deployments/:id', (req) => undeploy(ctx, req.params.id!, req), { query: ['grace_ms'] })
    // Works on config deployments too: hibernation changes what runs, not what is deployed.
    .route('POST', '/v1/deployments/:id/hibernate', async (req) => {
      const d = mustGet(deployments, req.params.id!);
      const grace = intParam(req, 'grace_ms', DEFAULT_UNDEPLOY_GRACE_MS, 0, 600_000);
      return { body: deployments.view(await deployments.hibernate(d.id, 'admin API', grace)) };
    }, { query: ['grace_ms'] })
    .route('GET', '/v1/deployments/:id/events', (req) => {
      const d = mustGet(deployments, req.params.id!);
      return { body: { id: d.id, events: d.events } };
    })
    .route('POST', '/v1/deployments/:id/wake', async (req) => {
      const d = mustGet(deployments, req.params.id!);
      const before = d.events.at(-1);
      const woken = await deployments.wake(d.id, 'admin API');
      // A wake that could not start it (no free port, ...) has put it back to sleep: the
      // caller hears so, not a 200 with a state it did not ask for.
      const last = woken.events.at(-1);
      if (last !== before && last?.action === 'wake_failed') {
        throw new SluiceError('SLUICE_ERR_DEPLOY_FAILED', `${d.id} could not be woken: ${last.why}; it is hibernated, and the next request or wake tries again`);
      }
      return { body: deployments.view(woken) };
    })
    .route('GET', '/v1/deployments/:id/logs', (req) => {
      const d = mustGet(deployments, req.params.id!);
      const tail = intParam(req, 'tail', 200, 1, 100_000);
      return { body: { id: d.id, lines: deployments.logs(d.id).slice(-tail) } };
    }, { query: ['tail'] })
    // The deployment service's endpoints (seed 002): same paths, same meaning.
    .route('GET', '/get_model_list', async () => {
      const models = await getRegistry().listModels();
      return {
        body: {
          models: models.map((m) => ({
            name: m.name,
            latest_versions: m.latest_versions.map((v) => v.version),
            aliases: Object.fromEntries(m.aliases.map((a) => [a.alias, a.version])),
          })),
        },
      };
    })
    .route('GET', '/get_model_version_list/:model', async (req) => {
      const name = checkName(req.params.model!, MODEL_NAME, 'model_name');
      const versions = await getRegistry().listVersions(name);
      if (versions.length === 0) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `model '${name}' has no versions in the registry`);
      versions.sort((a, b) => Number(a.version) - Number(b.version));
      return {
        body: {
          model: name,
          versions: versions.map((v) => ({
            version: v.version, status: v.status, stage: v.current_stage, run_id: v.run_id, source: v.source,
            aliases: v.aliases, deployed: deployments.get(deploymentId(name, v.version)) !== undefined,
          })),
        },
      };
    })
    .route('POST', '/deploy/:model/:version', async (req) => {
      const model = checkName(req.params.model!, MODEL_NAME, 'model_name');
      const version = await registryVersion(getRegistry, model, req.params.version!, (v) => refuseConfigOwned(ctx.config, deploymentId(model, v)));
      const d = await deploy(ctx, validBody<DeploymentConfig>(deploymentSchema, { ...(await req.json()), model, version, runtime: 'mlflow' }), req);
      return { status: 201, body: seedView(d) };
    }, { query: ['wait'] })
    .route('GET', '/get_deployed_models', () => ({ body: { deployed_models: deployments.list().map(seedView) } }))
    .route('POST', '/undeploy/:id', (req) => undeploy(ctx, req.params.id!, req), { query: ['grace_ms'] });
}

/** Deploys; with `?wait=true`, answers only once the deployment is ready (or failed or unhealthy: 502). */
async function deploy(ctx: DeploymentsApiContext, spec: DeploymentConfig, req: AdminRequest): Promise<ManagedDeployment> {
  const { deployments } = ctx;
  const wait = boolParam(req, 'wait');
  refuseConfigOwned(ctx.config, deploymentId(spec.model, spec.version));
  const problem = deploymentProblem(spec) ?? loopProblem(spec, ctx.config.listen);
  if (problem !== null) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${problem.field}: ${problem.reason}`, { field: problem.field });
  const shadow = shadowProblem(spec, deployments.list().map((d) => d.spec));
  if (shadow !== null) throw new SluiceError('SLUICE_ERR_CONFLICT', `${shadow.field}: ${shadow.reason}`, { field: shadow.field });
  let d = await deployments.deploy(spec, 'api');
  if (wait) {
    d = (await deployments.waitSettled(d.id, spec.start_timeout_ms + 5_000)) ?? d;
    if (d.state === 'failed') {
      throw new SluiceError('SLUICE_ERR_DEPLOY_FAILED', d.lastError ?? `deployment ${d.id} failed`, { deployment: deployments.view(d) });
    }
    if (d.state === 'unhealthy') {
      // It stays deployed and checked: it is routed as soon as a replica passes.
      const error = d.replicas.map((r) => r.health?.view().last_error).find((e) => e != null) ?? 'no check passed';
      throw new SluiceError('SLUICE_ERR_DEPLOY_FAILED', `no replica of ${d.id} passed its health check (${error}); it stays deployed and is routed once one passes`, { deployment: deployments.view(d) });
    }
  }
  return d;
}

async function undeploy(ctx: DeploymentsApiContext, rawId: string, req: AdminRequest): Promise<AdminReply> {
  const { deployments } = ctx;
  refuseConfigOwned(ctx.config, rawId);
  const d = mustGet(deployments, rawId);
  const grace = intParam(req, 'grace_ms', DEFAULT_UNDEPLOY_GRACE_MS, 0, 600_000);
  await deployments.undeploy(d.id, grace);
  return { body: { id: d.id, state: 'stopped' } };
}

/**
 * A deployment of the config file belongs to it: removed or replaced here, it would come
 * back from the file at the next start. Read from the config, not from the running set,
 * so that the answer holds while the gateway is still starting its deployments.
 */
function refuseConfigOwned(config: Config, id: string): void {
  if (config.deployments.some((d) => deploymentId(d.model, d.version) === id)) {
    throw new SluiceError('SLUICE_ERR_CONFIG_OWNED', `deployment ${id} is defined in the config file: change or remove it there, then restart the gateway`, { deployment: id, source: 'config' });
  }
}

function mustGet(deployments: DeploymentControl, id: string): ManagedDeployment {
  const d = deployments.get(id);
  if (d === undefined) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment '${id}'`);
  return d;
}

function seedView(d: ManagedDeployment): Record<string, unknown> {
  return { model: d.spec.model, version: d.spec.version, port: d.replicas[0]?.port ?? null, route: `/${d.id}/`, state: d.state, runtime: d.spec.runtime };
}

/** MLflow's alias names (mlflow/utils/validation.py); its versions are integers. */
const REGISTRY_ALIAS = /^[\w-]{1,255}$/;

/**
 * The registry version `/deploy/{model}/{version}` names: a version number, or an alias
 * (`champion`, or `latest`: the highest version), resolved now. The deployment is that
 * version's (`iris-2`): a later move of the alias leaves it as it is. `refuse` throws for a
 * version the config file owns: before the registry is asked, when the path names it.
 */
async function registryVersion(registry: () => MlflowRegistry, model: string, segment: string, refuse: (version: string) => void): Promise<string> {
  if (/^\d+$/.test(segment)) {
    const version = checkName(segment, VERSION_NAME, 'version');
    refuse(version);
    if ((await registry().getVersion(model, version)) === null) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `model '${model}' version '${version}' is not in the registry`);
    return version;
  }
  if (!REGISTRY_ALIAS.test(segment)) {
    throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `version: '${segment}' is neither a registry version (digits) nor an alias (${REGISTRY_ALIAS})`, { field: 'version' });
  }
  const found = await registry().getVersionByAlias(model, segment);
  if (found === null) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `model '${model}' has no alias '${segment}' in the registry`);
  const version = checkName(found.version, VERSION_NAME, 'version');
  refuse(version);
  return version;
}

function checkName(value: string, pattern: RegExp, field: string): string {
  if (!pattern.test(value)) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${field}: '${value}' is not a valid name (${pattern})`, { field });
  if (RESERVED_NAMES.includes(value)) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${field}: ${reservedReason(value)}`, { field });
  return value;
}
