// Defaults for a supervised replica, in one place, and the validation that turns what a
// caller passed into a frozen, complete set. Unknown keys are rejected so that a typo
// (`stopGrace`) fails at once instead of silently keeping a default.

import { checkArgv, checkEnv, checkInt, checkPath, checkString, invalid, MAX_TIMER_MS } from './validate.js';

export interface RestartPolicy {
  /** Delay before the first restart; doubles with each crash inside the window. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** The maxCrashes-th crash within windowMs is final: the replica goes `failed`. */
  readonly maxCrashes: number;
  readonly windowMs: number;
}

export interface ReplicaProcessOptions {
  readonly id: string;
  /** argv[0] is the executable, looked up in PATH; never run through a shell. */
  readonly argv: readonly string[];
  /** Layered over baseEnv. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * What the server inherits (PATH, HOME, ...); default: the gateway's whole environment.
   * The control plane passes the gateway's less its settings and secrets (control/server-env.ts).
   */
  readonly baseEnv?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly port: number;
  readonly host?: string;
  /** Path probed with GET until it answers 200, e.g. '/ping', '/', '/api/version'. */
  readonly readinessPath: string;
  readonly readinessIntervalMs?: number;
  readonly probeTimeoutMs?: number;
  readonly startTimeoutMs?: number;
  readonly stopGraceMs?: number;
  readonly restart?: Partial<RestartPolicy>;
  /** How many stdout/stderr lines to keep. */
  readonly logLines?: number;
  /**
   * Where the server's stdout/stderr go, as files `<id>.out` / `<id>.err` that the
   * supervisor tails. Files, not pipes: a server writing into the pipe of a gateway that
   * was SIGKILLed dies of SIGPIPE, and then there is nothing left to adopt. Without it,
   * output is captured through pipes.
   */
  readonly logDir?: string;
}

export interface ResolvedReplicaOptions {
  readonly id: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly baseEnv: Readonly<NodeJS.ProcessEnv>;
  readonly cwd: string | undefined;
  readonly port: number;
  readonly host: string;
  readonly readinessPath: string;
  readonly readinessIntervalMs: number;
  readonly probeTimeoutMs: number;
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly restart: RestartPolicy;
  readonly logLines: number;
  readonly logDir: string | undefined;
}

export const REPLICA_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  readinessIntervalMs: 300,
  probeTimeoutMs: 1000,
  startTimeoutMs: 60_000,
  stopGraceMs: 10_000,
  restart: Object.freeze({ backoffInitialMs: 500, backoffMaxMs: 30_000, maxCrashes: 5, windowMs: 60_000 }),
  logLines: 1000,
});

const OPTION_KEYS = new Set([
  'id', 'argv', 'env', 'baseEnv', 'cwd', 'port', 'host', 'readinessPath', 'readinessIntervalMs',
  'probeTimeoutMs', 'startTimeoutMs', 'stopGraceMs', 'restart', 'logLines', 'logDir',
]);
const RESTART_KEYS = new Set(Object.keys(REPLICA_DEFAULTS.restart));

function checkKeys(field: string, value: object, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) throw invalid(field === '' ? key : `${field}.${key}`, 'unknown option');
  }
}

export function resolveReplicaOptions(input: ReplicaProcessOptions): ResolvedReplicaOptions {
  if (typeof input !== 'object' || input === null) throw invalid('options', 'must be an object');
  checkKeys('', input, OPTION_KEYS);
  const restartIn: unknown = input.restart ?? {};
  if (typeof restartIn !== 'object' || restartIn === null) throw invalid('restart', 'must be an object');
  checkKeys('restart', restartIn, RESTART_KEYS);
  const r = { ...REPLICA_DEFAULTS.restart, ...(restartIn as Partial<RestartPolicy>) };
  const backoffInitialMs = checkInt('restart.backoffInitialMs', r.backoffInitialMs, 0, MAX_TIMER_MS);
  const restart: RestartPolicy = Object.freeze({
    backoffInitialMs,
    backoffMaxMs: checkInt('restart.backoffMaxMs', r.backoffMaxMs, backoffInitialMs, MAX_TIMER_MS),
    maxCrashes: checkInt('restart.maxCrashes', r.maxCrashes, 1, 1_000_000),
    windowMs: checkInt('restart.windowMs', r.windowMs, 1, MAX_TIMER_MS),
  });
  const d = REPLICA_DEFAULTS;
  const id = checkString('id', input.id, false);
  if (id.length > 256) throw invalid('id', 'must be at most 256 characters');
  return Object.freeze({
    id,
    argv: checkArgv('argv', input.argv),
    env: checkEnv('env', input.env),
    baseEnv: input.baseEnv === undefined ? process.env : checkEnv('baseEnv', input.baseEnv),
    cwd: input.cwd === undefined ? undefined : checkString('cwd', input.cwd, false),
    port: checkInt('port', input.port, 1, 65_535),
    host: checkString('host', input.host ?? d.host, false),
    readinessPath: checkPath('readinessPath', input.readinessPath),
    readinessIntervalMs: checkInt('readinessIntervalMs', input.readinessIntervalMs ?? d.readinessIntervalMs, 1, MAX_TIMER_MS),
    probeTimeoutMs: checkInt('probeTimeoutMs', input.probeTimeoutMs ?? d.probeTimeoutMs, 1, MAX_TIMER_MS),
    startTimeoutMs: checkInt('startTimeoutMs', input.startTimeoutMs ?? d.startTimeoutMs, 1, MAX_TIMER_MS),
    stopGraceMs: checkInt('stopGraceMs', input.stopGraceMs ?? d.stopGraceMs, 0, MAX_TIMER_MS),
    restart,
    logLines: checkInt('logLines', input.logLines ?? d.logLines, 1, 1_000_000),
    logDir: input.logDir === undefined ? undefined : checkString('logDir', input.logDir, false),
  });
}
