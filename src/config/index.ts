export { loadConfig, frontEndOf, DEFAULT_CONFIG_FILE, deploymentId, deploymentProblem, loopProblem, parseYamlAsWritten, shadowProblem, resolveHealthCheck, resolvePolicies } from './load.js';
export { apiKeySchema, ConfigError, configSchema, deploymentSchema, redactUrlSecrets, stringsAsWritten, validate, MODEL_NAME, RESERVED_NAMES, reservedReason, VERSION_NAME, type Field } from './schema.js';
export { jsonSchemaOf, type JsonSchema, type SchemaMode } from './json-schema.js';
export type { ApiKeyConfig, CacheConfig, Config, CostConfig, DependenciesConfig, DependencyBreakerConfig, DeploymentConfig, ScaleConfig, HealthCheckConfig, TracingConfig, LimitsConfig, PoliciesConfig, PoliciesOverride, Runtime, UpstreamAuthConfig, UpstreamOptions, HstsConfig, TlsConfig, TlsVersion } from './types.js';
