// What can go wrong in an admin command, each with a stable code and the exit status a
// script branches on. One table: README "## CLI" and `sluice --help` list the same statuses.

export const EXIT_CODES = {
  /** The admin API refused or failed the request, or a deployment failed or was not ready in time. */
  failed: 1,
  /** The command line itself is wrong (unknown command or option, bad value, missing argument). */
  usage: 2,
  /** No admin API answered at the URL (refused, unknown host, no answer in time, or another server's answer). */
  unreachable: 3,
  /** The admin API refused the token (missing or wrong). */
  unauthorized: 4,
} as const;

const CODES = {
  SLUICE_CLI_USAGE: EXIT_CODES.usage,
  SLUICE_CLI_UNREACHABLE: EXIT_CODES.unreachable,
  SLUICE_CLI_NOT_ADMIN_API: EXIT_CODES.unreachable,
  SLUICE_CLI_UNAUTHORIZED: EXIT_CODES.unauthorized,
  SLUICE_CLI_API: EXIT_CODES.failed,
  SLUICE_CLI_DEPLOY_FAILED: EXIT_CODES.failed,
  SLUICE_CLI_TIMEOUT: EXIT_CODES.failed,
} as const;

export type CliErrorCode = keyof typeof CODES;

export class CliError extends Error {
  readonly code: CliErrorCode;
  readonly exitCode: number;
  constructor(code: CliErrorCode, message: string) {
    super(message);
    this.name = 'CliError';
    this.code = code;
    this.exitCode = CODES[code];
  }
}

export const usageError = (message: string): CliError => new CliError('SLUICE_CLI_USAGE', message);

/** An answer of the admin API outside 2xx, with the error code its JSON body carries. */
export class AdminApiError extends CliError {
  readonly status: number;
  readonly apiCode: string | null;
  constructor(status: number, apiCode: string | null, message: string) {
    super(status === 401 ? 'SLUICE_CLI_UNAUTHORIZED' : 'SLUICE_CLI_API', message);
    this.name = 'AdminApiError';
    this.status = status;
    this.apiCode = apiCode;
  }
}
