// The registry room's door: the MLflow Model Registry client used by the control plane.
export { credentialsFromEnv, MlflowRegistry, nameFilter, registryUnavailable, type MlflowRegistryOptions } from './mlflow-registry.js';
export { RegistryError, isRegistryError, type RegistryErrorCode, type RegistryErrorDetails } from './errors.js';
export type { ModelVersion, ModelVersionStatus, RegisteredModel, RegisteredModelAlias, RegistryTag } from './types.js';
