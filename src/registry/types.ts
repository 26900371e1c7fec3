// MLflow Model Registry entities as the REST API sends them (protocols.md A3.3):
// snake_case names, epoch-millisecond timestamps, `version` always a string.
// MLflow omits empty fields; the client fills the list fields with [] so callers
// never need `?? []`, and leaves scalar fields optional.

export type ModelVersionStatus = 'PENDING_REGISTRATION' | 'FAILED_REGISTRATION' | 'READY';

export interface RegistryTag {
  key: string;
  value: string;
}

export interface ModelVersion {
  name: string;
  /** A decimal integer as a string ("1", "2", ...), as MLflow sends it. */
  version: string;
  creation_timestamp?: number;
  last_updated_timestamp?: number;
  /** Legacy stage: "None" | "Staging" | "Production" | "Archived". */
  current_stage?: string;
  description?: string;
  /** Where the artefacts are: `models:/m-...` (3.x logged model), `runs:/...`, `s3://...`. */
  source?: string;
  run_id?: string;
  run_link?: string;
  /** Known values in ModelVersionStatus; kept open so a newer MLflow does not break parsing. */
  status?: ModelVersionStatus | (string & {});
  status_message?: string;
  user_id?: string;
  /** MLflow 3.x logged-model id. */
  model_id?: string;
  tags: RegistryTag[];
  /** Aliases pointing at this version, e.g. ["champion"]. */
  aliases: string[];
}

export interface RegisteredModelAlias {
  alias: string;
  version: string;
}

export interface RegisteredModel {
  name: string;
  creation_timestamp?: number;
  last_updated_timestamp?: number;
  description?: string;
  user_id?: string;
  /** Latest version per legacy stage; not the full version list (see listVersions). */
  latest_versions: ModelVersion[];
  tags: RegistryTag[];
  aliases: RegisteredModelAlias[];
}
