import { pino, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  readonly level: string;
  readonly name?: string;
  /** Buffer writes (worker access logs); flushed on exit. */
  readonly buffered?: boolean;
  readonly bindings?: Record<string, unknown>;
}

// Secrets never reach the log: whatever path they hide under, these keys are censored.
const REDACT = [
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'token', '*.token', 'api_key', '*.api_key', 'password', '*.password', 'x-api-key', '*.headers["x-api-key"]',
];

export function createLogger(options: LoggerOptions): Logger {
  const destination = pino.destination({ dest: 1, sync: !options.buffered, minLength: options.buffered ? 4096 : 0 });
  const logger = pino(
    {
      level: options.level,
      name: options.name ?? 'sluice',
      base: { pid: process.pid, ...options.bindings },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  if (options.buffered) {
    // Flush what is buffered when the thread or process ends.
    process.on('exit', () => destination.flushSync());
  }
  return logger;
}
