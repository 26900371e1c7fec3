// Buffered, asynchronous, bounded writes of log lines to a file descriptor, as nginx's
// `access_log ... buffer=64k`: lines pile up in memory and go out in one write once
// `bufferBytes` are waiting (or every `flushIntervalMs`), on libuv's thread pool, so the
// thread that logs never waits for the sink, even a blocking pipe that nobody reads. When
// the sink is slower than the traffic (a stalled pipe, a full disk), at most
// `maxBufferBytes` wait; further lines are dropped and counted, never blocking the thread
// nor growing without bound.
//
// Several threads write to one stdout (each data-plane worker, the main thread). On a
// regular file every write() lands whole, but on a pipe or a socket a write can be cut
// short when the reader lags, and another thread's write would then land inside a line.
// There the buffer goes out in pieces of at most PIPE_BUF bytes ending on a line boundary,
// which a pipe takes whole or not at all.
//
// pino's own destination (sonic-boom) was measured at a third of the data plane's
// throughput with one line per request: it measures the UTF-8 length of its whole pending
// buffer on every write, and pino builds and redacts an object per line. Here a line is
// encoded at once into a 64 KiB chunk and its string dies young. (Lines kept as one string
// rope until the write stayed alive across the young generation's collections, which
// copied the rope each time: about 0.4 us of CPU per request under load, measured.)

import { fstatSync, write, writeSync } from 'node:fs';

export interface LineWriterOptions {
  readonly fd: number;
  /** Write once this many bytes wait; 0: at once. */
  readonly bufferBytes: number;
  /** At most this many wait, besides the write in progress; beyond, lines are dropped. */
  readonly maxBufferBytes: number;
  /** Lines never wait longer than this for a write (0: only when the buffer fills). */
  readonly flushIntervalMs: number;
}

/** How long an EAGAIN (a non-blocking pipe that is full) waits before the write is retried. */
const RETRY_MS = 10;
/** What Linux writes to a pipe whole or not at all (PIPE_BUF). */
const ATOMIC_PIPE_WRITE = 4096;
/** A stalled sink delays an exit by at most this much (flushSync). */
const EXIT_FLUSH_MS = 500;
/** The size of the chunks lines are encoded into; a longer line gets a chunk of its own. */
const CHUNK_BYTES = 64 * 1024;
/** The most bytes one UTF-16 unit can take in UTF-8. */
const MAX_BYTES_PER_UNIT = 3;
const NEWLINE = 0x0a;
/** Ends a line that a write cut short left in the sink. */
const LINE_END = Buffer.from('\n');

/** Buffer's native UTF-8 encoder, without Buffer#write's argument handling in front of it (a line a request). */
interface Utf8Writer {
  utf8Write(text: string, offset: number, length: number): number;
}

/** Encoded lines waiting for the sink. */
interface Chunk {
  readonly buf: Buffer;
  readonly used: number;
  readonly lines: number;
}

export class LineWriter {
  /** Lines written (handed to the sink) and dropped, since the start. */
  lines = 0;
  dropped = 0;
  readonly #fd: number;
  readonly #bufferBytes: number;
  readonly #maxBufferBytes: number;
  /** Largest write: PIPE_BUF on a pipe or socket, unbounded elsewhere. */
  readonly #pieceBytes: number;
  /** Full chunks waiting, oldest first, then the chunk being filled. */
  readonly #sealed: Chunk[] = [];
  #fill: Buffer;
  #fillUsed = 0;
  #fillLines = 0;
  /** Bytes and lines waiting (sealed and being filled), besides the write in progress. */
  #waitingBytes = 0;
  #waitingLines = 0;
  /** A written chunk kept for the next fill, so that chunks are not allocated per write. */
  #spare: Buffer | null = null;
  /** The chunk being written, the part of it to write, and how much of that the sink has taken. */
  #writingChunk: Buffer | null = null;
  #writing: Buffer | null = null;
  #writingLines = 0;
  #offset = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Resolved when everything is written (close()). */
  #drained: (() => void) | null = null;
  #failed = false;
  /** The sink ends with part of a line (a write a full disk cut short): the next write ends it first. */
  #torn = false;

  constructor(options: LineWriterOptions) {
    this.#fd = options.fd;
    this.#bufferBytes = options.bufferBytes;
    this.#maxBufferBytes = options.maxBufferBytes;
    this.#pieceBytes = sharedStream(options.fd) ? ATOMIC_PIPE_WRITE : Number.MAX_SAFE_INTEGER;
    this.#fill = Buffer.allocUnsafeSlow(CHUNK_BYTES);
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
    const fill = this.#room(line.length, line.length * MAX_BYTES_PER_UNIT);
    if (fill === null) return;
    this.#added((fill as unknown as Utf8Writer).utf8Write(line, this.#fillUsed, fill.length - this.#fillUsed));
  }

  /**
   * Room for one line of at most `maxBytes` bytes (its newline included), which the caller
   * encodes into the returned buffer from `lineStart` and gives with endLine(): a line
   * assembled from bytes kept ready (the access log's) is then never a string to flatten
   * and encode. Null: the line is dropped (and counted), as write() drops one.
   */
  beginLine(maxBytes: number): Buffer | null {
    return this.#room(maxBytes, maxBytes);
  }

  /** Where the line begun with beginLine() starts in its buffer. */
  get lineStart(): number {
    return this.#fillUsed;
  }

  /** The line begun with beginLine() ends at `end` (exclusive) in its buffer. */
  endLine(end: number): void {
    this.#added(end - this.#fillUsed);
  }

  /** The chunk being filled, with room for `atMost` bytes; null (a dropped line) when `atLeast` more would pass maxBufferBytes. */
  #room(atLeast: number, atMost: number): Buffer | null {
    if (this.#waitingBytes + atLeast > this.#maxBufferBytes || this.#failed) {
      this.dropped++;
      return null;
    }
    if (this.#fillUsed + atMost > this.#fill.length) {
      this.#seal();
      if (atMost > this.#fill.length) this.#fill = Buffer.allocUnsafeSlow(atMost);
    }
    return this.#fill;
  }

  /** A line of `bytes` was put in the chunk being filled. */
  #added(bytes: number): void {
    this.#fillUsed += bytes;
    this.#fillLines++;
    this.#waitingBytes += bytes;
    this.#waitingLines++;
    if (this.#waitingBytes >= this.#bufferBytes && this.#writing === null) this.#start();
  }

  /** Starts a write of what waits, unless one is in progress (its end starts the next). */
  flush(): void {
    if (this.#writing === null && this.#waitingLines > 0) this.#start();
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
        this.dropped += this.#writingLines + this.#waitingLines;
        resolve();
      }, timeoutMs);
      this.#drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Last resort when the thread ends without close() (a crash): writes what waits
   * synchronously, retrying a full non-blocking pipe for a moment. A write still in
   * progress on the thread pool may then land after these lines.
   */
  flushSync(): void {
    if (this.#waitingLines === 0 || this.#failed) return;
    this.#seal();
    const deadline = Date.now() + EXIT_FLUSH_MS;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let chunk = this.#sealed.shift(); chunk !== undefined; chunk = this.#sealed.shift()) {
      const buf = chunk.buf.subarray(0, chunk.used);
      this.#waitingBytes -= chunk.used;
      this.#waitingLines -= chunk.lines;
      let off = 0;
      while (off < buf.length) {
        try {
          off += writeSync(this.#fd, buf, off, pieceEnd(buf, off, this.#pieceBytes) - off);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) break;
          Atomics.wait(pause, 0, 0, RETRY_MS);
        }
      }
      if (off < buf.length) this.dropped += chunk.lines;
      else this.lines += chunk.lines;
    }
  }

  /** Moves the chunk being filled, if it holds a line, to the sealed ones, and starts a new one. */
  #seal(): void {
    if (this.#fillLines === 0) return;
    this.#sealed.push({ buf: this.#fill, used: this.#fillUsed, lines: this.#fillLines });
    const spare = this.#spare;
    this.#spare = null;
    this.#fill = spare ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
    this.#fillUsed = 0;
    this.#fillLines = 0;
  }

  #start(): void {
    if (this.#sealed.length === 0) this.#seal();
    const chunk = this.#sealed.shift()!;
    this.#writingChunk = chunk.buf;
    this.#writing = chunk.buf.subarray(0, chunk.used);
    this.#writingLines = chunk.lines;
    this.#offset = 0;
    this.#waitingBytes -= chunk.used;
    this.#waitingLines -= chunk.lines;
    this.#write();
  }

  #write(): void {
    if (this.#torn) {
      write(this.#fd, LINE_END, 0, 1, null, this.onWritten);
      return;
    }
    const buf = this.#writing!;
    write(this.#fd, buf, this.#offset, pieceEnd(buf, this.#offset, this.#pieceBytes) - this.#offset, null, this.onWritten);
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
      if (err.code === 'ENOSPC' || err.code === 'EDQUOT' || err.code === 'EFBIG') {
        this.#dropWriting();
        return;
      }
      // A closed or broken sink: nothing more can be written; lines are counted as dropped.
      this.#failed = true;
      this.dropped += this.#writingLines + this.#waitingLines;
      this.#sealed.length = 0;
      this.#fillUsed = 0;
      this.#fillLines = 0;
      this.#waitingBytes = 0;
      this.#waitingLines = 0;
      this.#writing = null;
      this.#writingChunk = null;
      this.#drained?.();
      return;
    }
    if (this.#torn) {
      // The torn line is ended: now the chunk itself.
      this.#torn = false;
      this.#write();
      return;
    }
    this.#offset += written;
    if (this.#offset < this.#writing!.length) {
      // The rest of a piece the sink cut short, or the next piece.
      this.#write();
      return;
    }
    this.lines += this.#writingLines;
    this.#written();
  }

  /**
   * The sink is full for now (a full disk, a quota, a file size limit): the lines of this
   * write that did not go out whole are dropped, and the next write tries again, so that
   * logging comes back once there is room (as nginx's does), rather than ending for good.
   */
  #dropWriting(): void {
    const buf = this.#writing!;
    let whole = 0;
    for (let i = buf.indexOf(NEWLINE); i !== -1 && i < this.#offset; i = buf.indexOf(NEWLINE, i + 1)) whole++;
    if (this.#offset > 0) this.#torn = buf[this.#offset - 1] !== NEWLINE;
    this.lines += whole;
    this.dropped += this.#writingLines - whole;
    this.#written();
  }

  /** The write in progress is over: the next one, or the end of a close. */
  #written(): void {
    if (this.#writingChunk!.length === CHUNK_BYTES) this.#spare = this.#writingChunk;
    this.#writing = null;
    this.#writingChunk = null;
    this.#writingLines = 0;
    // What piled up meanwhile goes at once when a buffer's worth waits, or when closing.
    if (this.#waitingLines > 0 && (this.#waitingBytes >= this.#bufferBytes || this.#drained !== null)) this.#start();
    else if (this.#drained !== null) {
      const drained = this.#drained;
      this.#drained = null;
      drained();
    }
  }
}

/** Whether `fd` is a pipe or a socket, where a long write may be cut short (see above). */
function sharedStream(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFIFO() || st.isSocket();
  } catch {
    return true;
  }
}

/** The end of the piece that starts at `from`: at most `max` bytes, on a line boundary when it can. */
function pieceEnd(buf: Buffer, from: number, max: number): number {
  if (buf.length - from <= max) return buf.length;
  const nl = buf.lastIndexOf(NEWLINE, from + max - 1);
  if (nl >= from) return nl + 1;
  // One line longer than a piece: written alone, whole.
  const next = buf.indexOf(NEWLINE, from + max);
  return next === -1 ? buf.length : next + 1;
}
