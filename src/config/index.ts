export { loadConfig, DEFAULT_CONFIG_FILE } from './load.js';
export { ConfigError, deploymentSchema, validate, MODEL_NAME, VERSION_NAME } from './schema.js';
export type { Config, DeploymentConfig, Runtime, UpstreamOptions } from './types.js';
