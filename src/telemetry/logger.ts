import { pino, type Logger } from 'pino';
import type { LineWriter } from './line-writer.js';

export type { Logger };

export interface LoggerOptions {
  readonly level: string;
  readonly name?: string;
  /**
   * Where lines go: a LineWriter on stdout, never a synchronous write, so that a stalled
   * stdout (a pipe nobody reads) cannot freeze the thread that logs. A data-plane worker
   * shares its access log's writer, so its lines and its access lines never cut each other.
   */
  readonly writer: LineWriter;
  readonly bindings?: Record<string, unknown>;
}

// Secrets never reach the log: whatever path they hide under, these keys are censored.
const REDACT = [
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'token', '*.token', 'api_key', '*.api_key', 'password', '*.password', 'x-api-key', '*.headers["x-api-key"]',
];

export function createLogger(options: LoggerOptions): Logger {
  const writer = options.writer;
  const logger = pino(
    {
      level: options.level,
      name: options.name ?? 'sluice',
      base: { pid: process.pid, ...options.bindings },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    writer,
  );
  // What still waits when the thread or process ends without closing the writer (a crash).
  process.on('exit', () => writer.flushSync());
  return logger;
}
