// Errors of the MLflow registry client. Callers (the admin API) branch on `code` and
// answer with `status`; the registry's own status and error code ride along for logs.

export const REGISTRY_ERRORS = {
  /** Down, refused, timed out, or answered 5xx/429: worth retrying later. */
  SLUICE_ERR_REGISTRY_UNAVAILABLE: { status: 503, message: 'model registry unavailable' },
  /** Answered something that is not the MLflow REST API (HTML, bad JSON, wrong shape). */
  SLUICE_ERR_REGISTRY_BAD_RESPONSE: { status: 502, message: 'model registry sent an invalid response' },
  /** 401/403: the gateway's registry credentials (or the registry's allowed hosts) are wrong. */
  SLUICE_ERR_REGISTRY_UNAUTHORIZED: { status: 502, message: 'model registry refused the gateway credentials' },
  /** The registry says the named object does not exist (MLflow RESOURCE_DOES_NOT_EXIST). */
  SLUICE_ERR_REGISTRY_NOT_FOUND: { status: 404, message: 'not found in the model registry' },
  /** Any other 4xx with an MLflow error body, e.g. INVALID_PARAMETER_VALUE. */
  SLUICE_ERR_REGISTRY_REJECTED: { status: 502, message: 'model registry rejected the request' },
} as const;

export type RegistryErrorCode = keyof typeof REGISTRY_ERRORS;

export interface RegistryErrorDetails {
  /** The registry's HTTP status, when it answered at all. */
  httpStatus?: number;
  /** MLflow's `error_code` from the body, e.g. RESOURCE_DOES_NOT_EXIST. */
  mlflowErrorCode?: string;
  /** Request URL without credentials. */
  url?: string;
  cause?: unknown;
}

export class RegistryError extends Error {
  readonly code: RegistryErrorCode;
  /** HTTP status the admin API should answer with. */
  readonly status: number;
  readonly httpStatus: number | undefined;
  readonly mlflowErrorCode: string | undefined;
  readonly url: string | undefined;

  constructor(code: RegistryErrorCode, message?: string, details: RegistryErrorDetails = {}) {
    super(message ?? REGISTRY_ERRORS[code].message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.status = REGISTRY_ERRORS[code].status;
    this.httpStatus = details.httpStatus;
    this.mlflowErrorCode = details.mlflowErrorCode;
    this.url = details.url;
  }
}

export function isRegistryError(err: unknown): err is RegistryError {
  return err instanceof RegistryError;
}
