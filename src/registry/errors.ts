// Errors of the MLflow registry client. Callers (the admin API) branch on `code` and
// answer with `status`; the registry's own status and error code ride along for logs.

import { SluiceError, type ErrorCode } from '../errors/index.js';

/**
 * Down, refused, timed out, 5xx/429 (UNAVAILABLE); not the MLflow REST API (BAD_RESPONSE);
 * 401/403 (UNAUTHORIZED); RESOURCE_DOES_NOT_EXIST (NOT_FOUND); any other 4xx (REJECTED).
 * Statuses are in the one error table, src/errors/index.ts.
 */
export type RegistryErrorCode = Extract<ErrorCode, `SLUICE_ERR_REGISTRY_${string}`>;

export interface RegistryErrorDetails {
  /** The registry's HTTP status, when it answered at all. */
  httpStatus?: number;
  /** MLflow's `error_code` from the body, e.g. RESOURCE_DOES_NOT_EXIST. */
  mlflowErrorCode?: string;
  /** Request URL without credentials. */
  url?: string;
  cause?: unknown;
}

export class RegistryError extends SluiceError {
  declare readonly code: RegistryErrorCode;
  readonly httpStatus: number | undefined;
  readonly mlflowErrorCode: string | undefined;
  readonly url: string | undefined;

  constructor(code: RegistryErrorCode, message?: string, details: RegistryErrorDetails = {}) {
    super(code, message, undefined, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'RegistryError';
    this.httpStatus = details.httpStatus;
    this.mlflowErrorCode = details.mlflowErrorCode;
    this.url = details.url;
  }
}

export function isRegistryError(err: unknown): err is RegistryError {
  return err instanceof RegistryError;
}
