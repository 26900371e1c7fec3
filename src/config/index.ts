export { loadConfig, DEFAULT_CONFIG_FILE, resolvePolicies } from './load.js';
export { ConfigError, deploymentSchema, validate, MODEL_NAME, VERSION_NAME } from './schema.js';
export type { ApiKeyConfig, CacheConfig, Config, DeploymentConfig, LimitsConfig, PoliciesConfig, PoliciesOverride, Runtime, UpstreamOptions } from './types.js';
