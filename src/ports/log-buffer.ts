// The last N lines a model server printed, kept so that a failed start can say why.
// Bounded twice: N lines, and each line cut at MAX_LINE characters, because a server
// that prints without newlines must not grow the gateway's memory.

import type { Readable } from 'node:stream';

export type LogStream = 'stdout' | 'stderr';

export interface LogLine {
  readonly stream: LogStream;
  readonly line: string;
  /** Epoch milliseconds when the line was complete. */
  readonly at: number;
}

const MAX_LINE = 8192;

export class LogBuffer {
  readonly #slots: (LogLine | undefined)[];
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#slots = new Array<LogLine | undefined>(capacity);
  }

  push(stream: LogStream, line: string): void {
    const capacity = this.#slots.length;
    if (capacity === 0) return;
    this.#slots[this.#next] = { stream, line, at: Date.now() };
    this.#next = (this.#next + 1) % capacity;
    if (this.#size < capacity) this.#size++;
  }

  /** The newest `n` lines (all by default), oldest first. */
  tail(n = this.#size): LogLine[] {
    const count = Math.min(n, this.#size);
    const capacity = this.#slots.length;
    const out: LogLine[] = [];
    for (let i = count; i > 0; i--) {
      const slot = this.#slots[(this.#next - i + capacity) % capacity];
      if (slot !== undefined) out.push(slot);
    }
    return out;
  }

  /** Splits `readable` into lines as they arrive; a trailing partial line is kept at end. */
  capture(readable: Readable, stream: LogStream): void {
    const lines = new LineSplitter(this, stream);
    readable.setEncoding('utf8');
    readable.on('data', (chunk: string) => lines.write(chunk));
    readable.on('end', () => lines.end());
    // A pipe error only ends the capture; the process itself is watched elsewhere.
    readable.on('error', () => {});
  }
}

/** Cuts text into lines for a LogBuffer, bounded per line. */
export class LineSplitter {
  readonly #buffer: LogBuffer;
  readonly #stream: LogStream;
  #partial = '';

  constructor(buffer: LogBuffer, stream: LogStream) {
    this.#buffer = buffer;
    this.#stream = stream;
  }

  write(chunk: string): void {
    let text = this.#partial + chunk;
    let newline = text.indexOf('\n');
    while (newline >= 0) {
      this.#buffer.push(this.#stream, stripCr(text.slice(0, Math.min(newline, MAX_LINE))));
      text = text.slice(newline + 1);
      newline = text.indexOf('\n');
    }
    while (text.length > MAX_LINE) {
      this.#buffer.push(this.#stream, text.slice(0, MAX_LINE));
      text = text.slice(MAX_LINE);
    }
    this.#partial = text;
  }

  end(): void {
    if (this.#partial !== '') this.#buffer.push(this.#stream, stripCr(this.#partial));
    this.#partial = '';
  }

  /** `bytes` of output were passed over unread: said as a line of its own, where they were. */
  skipped(bytes: number): void {
    this.end();
    this.#buffer.push(this.#stream, `[sluice: ${bytes} bytes of output not read: the server wrote faster than the gateway reads its log]`);
  }
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/** Formats lines for an error message: one per line, stream-tagged. */
export function formatLines(lines: readonly LogLine[]): string {
  return lines.map((l) => `[${l.stream}] ${l.line}`).join('\n');
}

// The line that ends a Python traceback, or a Node one: `RuntimeError: boom`, `Exception: ...`,
// `mlflow.exceptions.RestException: RESOURCE_DOES_NOT_EXIST: ...`, `Error: Cannot find module`.
const EXCEPTION_LINE = /^(?:[A-Za-z_][\w.]*)?(?:Error|Exception)(?::|$)/;

/** The text of the first line printed since `since` (epoch ms) that names an exception. */
export function firstErrorLine(lines: readonly LogLine[], since: number): string | undefined {
  return lines.find((l) => l.at >= since && EXCEPTION_LINE.test(l.line))?.line;
}
