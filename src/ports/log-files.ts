// Model-server output written to files rather than pipes, so that the server outlives a
// gateway that dies (a pipe whose reader is gone kills the writer with SIGPIPE), and so
// that a gateway which adopts the server later can still read what it prints.

import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { LineSplitter, type LogBuffer, type LogStream } from './log-buffer.js';

const POLL_MS = 200;
const READ_BYTES = 64 * 1024;
// A file over this size is truncated; the newest lines live on in the LogBuffer. The
// server opened it with O_APPEND, so its next write lands at the new end.
const MAX_FILE_BYTES = 16 * 1024 * 1024;

export interface LogFilePaths {
  readonly stdout: string;
  readonly stderr: string;
}

export function logFilePaths(dir: string, id: string): LogFilePaths {
  const safe = id.replace(/[^A-Za-z0-9._-]/g, '_');
  return { stdout: join(dir, `${safe}.out`), stderr: join(dir, `${safe}.err`) };
}

/** Opens both files for appending, for a child's stdio; the caller closes the fds after spawn. */
export function openLogFiles(dir: string, paths: LogFilePaths): [number, number] {
  mkdirSync(dir, { recursive: true });
  return [openSync(paths.stdout, 'a', 0o600), openSync(paths.stderr, 'a', 0o600)];
}

/** Follows both files into the LogBuffer from their current end until `stop()`. */
export class LogFileTail {
  readonly #tails: FileTail[];
  readonly #timer: NodeJS.Timeout;

  constructor(paths: LogFilePaths, buffer: LogBuffer) {
    this.#tails = [new FileTail(paths.stdout, 'stdout', buffer), new FileTail(paths.stderr, 'stderr', buffer)];
    this.#timer = setInterval(() => this.poll(), POLL_MS);
    this.#timer.unref();
  }

  poll(): void {
    for (const t of this.#tails) t.poll();
  }

  /** Reads what is left, then closes. */
  stop(): void {
    clearInterval(this.#timer);
    for (const t of this.#tails) t.close();
  }
}

class FileTail {
  readonly #fd: number | null;
  readonly #lines: LineSplitter;
  readonly #chunk = Buffer.allocUnsafe(READ_BYTES);
  #pos: number;

  constructor(path: string, stream: LogStream, buffer: LogBuffer) {
    this.#lines = new LineSplitter(buffer, stream);
    let fd: number | null = null;
    try {
      fd = openSync(path, 'a+');
    } catch {
      fd = null;
    }
    this.#fd = fd;
    this.#pos = fd === null ? 0 : fstatSync(fd).size;
  }

  poll(): void {
    const fd = this.#fd;
    if (fd === null) return;
    const size = fstatSync(fd).size;
    if (size < this.#pos) this.#pos = 0; // truncated under us
    while (this.#pos < size) {
      const n = readSync(fd, this.#chunk, 0, READ_BYTES, this.#pos);
      if (n <= 0) break;
      this.#pos += n;
      this.#lines.write(this.#chunk.toString('utf8', 0, n));
    }
    if (size > MAX_FILE_BYTES) {
      ftruncateSync(fd, 0);
      this.#pos = 0;
    }
  }

  close(): void {
    this.poll();
    this.#lines.end();
    if (this.#fd !== null) closeSync(this.#fd);
  }
}
