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
  // Buffered output is still flushed every second: a quiet gateway must show a line (an
  // error above all) promptly, not once 4 KiB have piled up or at exit.
  const destination = pino.destination({ dest: 1, sync: !options.buffered, minLength: options.buffered ? 4096 : 0, periodicFlush: options.buffered ? 1000 : 0 });
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
