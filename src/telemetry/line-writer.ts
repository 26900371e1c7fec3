// Buffered, asynchronous, bounded writes of log lines to a file descriptor, as nginx's
// `access_log ... buffer=64k`: lines pile up in memory and go out in one write once
// `bufferBytes` are waiting (or every `flushIntervalMs`), on libuv's thread pool, so the
// thread that logs never waits for the sink. When the sink is slower than the traffic
// (a stalled pipe, a full disk), at most `maxBufferBytes` wait; further lines are dropped
// and counted, never blocking the data plane nor growing without bound.
//
// pino's own destination (sonic-boom) was measured at a third of the data plane's
// throughput with one line per request: it measures the UTF-8 length of its whole pending
// buffer on every write, and pino builds and redacts an object per line. Here a line is
// one string concatenated onto a rope; it is flattened and encoded once per write.

import { write, writeSync } from 'node:fs';

export interface LineWriterOptions {
  readonly fd: number;
  /** Write once this many bytes (UTF-16 units, equal for the ASCII lines logged) wait. */
  readonly bufferBytes: number;
  /** At most this many wait, besides the write in progress; beyond, lines are dropped. */
  readonly maxBufferBytes: number;
  /** Lines never wait longer than this for a write (0: only when the buffer fills). */
  readonly flushIntervalMs: number;
}

/** How long an EAGAIN (a non-blocking pipe that is full) waits before the write is retried. */
const RETRY_MS = 10;

export class LineWriter {
  /** Lines written (handed to the sink) and dropped, since the start. */
  lines = 0;
  dropped = 0;
  readonly #fd: number;
  readonly #bufferBytes: number;
  readonly #maxBufferBytes: number;
  #pending = '';
  #pendingLines = 0;
  /** The buffer being written, and how much of it the sink has taken. */
  #writing: Buffer | null = null;
  #writingLines = 0;
  #offset = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Resolved when everything is written (close()). */
  #drained: (() => void) | null = null;
  #failed: Error | null = null;

  constructor(options: LineWriterOptions) {
    this.#fd = options.fd;
    this.#bufferBytes = options.bufferBytes;
    this.#maxBufferBytes = options.maxBufferBytes;
    this.onWritten = this.onWritten.bind(this);
    this.flush = this.flush.bind(this);
    this.retry = this.retry.bind(this);
    if (options.flushIntervalMs > 0) {
      this.#timer = setInterval(this.flush, options.flushIntervalMs);
      this.#timer.unref();
    }
  }

  /** Queues one line (with its newline). */
  write(line: string): void {
    const length = this.#pending.length + line.length;
    if (length > this.#maxBufferBytes || this.#failed !== null) {
      this.dropped++;
      return;
    }
    this.#pending += line;
    this.#pendingLines++;
    if (length >= this.#bufferBytes && this.#writing === null) this.#start();
  }

  /** Starts a write of what waits, unless one is in progress (its end starts the next). */
  flush(): void {
    if (this.#writing === null && this.#pendingLines > 0) this.#start();
  }

  /**
   * Writes everything that waits and resolves once the sink has it, or after `timeoutMs`
   * (a sink that stalls must not hold a stop forever); what is still unwritten then counts
   * as dropped. Lines written afterwards still go out.
   */
  close(timeoutMs: number): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.flush();
    if (this.#writing === null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#drained = null;
        this.dropped += this.#writingLines + this.#pendingLines;
        resolve();
      }, timeoutMs);
      this.#drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Last resort when the thread exits without close(): writes what waits synchronously,
   * unless a write is in progress (its buffer would be written twice or out of order).
   */
  flushSync(): void {
    if (this.#writing !== null || this.#pendingLines === 0 || this.#failed !== null) return;
    const buf = Buffer.from(this.#pending, 'utf8');
    this.#pending = '';
    try {
      for (let off = 0; off < buf.length;) off += writeSync(this.#fd, buf, off, buf.length - off);
      this.lines += this.#pendingLines;
    } catch {
      this.dropped += this.#pendingLines;
    }
    this.#pendingLines = 0;
  }

  #start(): void {
    this.#writing = Buffer.from(this.#pending, 'utf8');
    this.#writingLines = this.#pendingLines;
    this.#offset = 0;
    this.#pending = '';
    this.#pendingLines = 0;
    this.#write();
  }

  #write(): void {
    const buf = this.#writing!;
    write(this.#fd, buf, this.#offset, buf.length - this.#offset, null, this.onWritten);
  }

  /** Bound once in the constructor, as onWritten. */
  private retry(): void {
    this.#write();
  }

  /** Bound once in the constructor: the callback of every write. */
  private onWritten(err: NodeJS.ErrnoException | null, written: number): void {
    if (err !== null) {
      if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') {
        setTimeout(this.retry, RETRY_MS);
        return;
      }
      // A closed or broken sink: nothing more can be written; lines are counted as dropped.
      this.#failed = err;
      this.dropped += this.#writingLines + this.#pendingLines;
      this.#pending = '';
      this.#pendingLines = 0;
      this.#writing = null;
      this.#drained?.();
      return;
    }
    this.#offset += written;
    if (this.#offset < this.#writing!.length) {
      this.#write();
      return;
    }
    this.lines += this.#writingLines;
    this.#writing = null;
    this.#writingLines = 0;
    // What piled up meanwhile goes at once when a buffer's worth waits, or when closing.
    if (this.#pendingLines > 0 && (this.#pending.length >= this.#bufferBytes || this.#drained !== null)) this.#start();
    else if (this.#drained !== null) {
      const drained = this.#drained;
      this.#drained = null;
      drained();
    }
  }
}
