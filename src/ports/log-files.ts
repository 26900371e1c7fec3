// Model-server output written to files rather than pipes, so that the server outlives a
// gateway that dies (a pipe whose reader is gone kills the writer with SIGPIPE), and so
// that a gateway which adopts the server later can still read what it prints.

import { closeSync, fstatSync, ftruncate, mkdirSync, openSync, readSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LineSplitter, type LogBuffer, type LogStream } from './log-buffer.js';

const POLL_MS = 200;
// After a poll that found more than FAST_GROWTH_BYTES new: a server printing this fast
// would grow its file by hundreds of MB between two 200 ms polls (truncation only comes
// with a poll), so the next one comes sooner.
const FAST_POLL_MS = 20;
const FAST_GROWTH_BYTES = 1024 * 1024;
const READ_BYTES = 64 * 1024;
// At most this much is read per file and poll, the newest output (the LogBuffer keeps the
// newest lines only): reading and splitting hundreds of MB at once stalled the control plane.
const MAX_READ_BYTES = READ_BYTES;
// A file over this size is truncated; the newest lines live on in the LogBuffer. The
// server opened it with O_APPEND, so its next write lands at the new end.
const MAX_FILE_BYTES = 16 * 1024 * 1024;

export interface LogFilePaths {
  readonly stdout: string;
  readonly stderr: string;
}

export function logFilePaths(dir: string, id: string): LogFilePaths {
  const safe = replicaFileName(id);
  return { stdout: join(dir, `${safe}.out`), stderr: join(dir, `${safe}.err`) };
}

/**
 * A replica's (or a deployment's) id as a file name, one to one: the `/` of `<deployment>/<n>`
 * as `_`, and a model name's `:` (Ollama's style) as `%3A`, which no id has, so that `a:b-1`
 * and `a_b-1` never share their log files or TMPDIR (an undeploy of one removed the other's).
 */
export function replicaFileName(id: string): string {
  return id.replaceAll(':', '%3A').replace(/[^A-Za-z0-9._%-]/g, '_');
}

/** Removes a replica's two files, once it is gone for good (a scale-down): nobody reads them any more. */
export async function removeReplicaLogs(dir: string, replica: string): Promise<void> {
  const paths = logFilePaths(dir, replica);
  await Promise.all([rm(paths.stdout, { force: true }), rm(paths.stderr, { force: true })]);
}

/**
 * Removes the files of every replica deployment `id` had (`<id>/<n>`: scaled up, woken, or
 * in an earlier run), once it is undeployed.
 */
export async function removeDeploymentLogs(dir: string, id: string): Promise<void> {
  const prefix = `${replicaFileName(id)}_`;
  const names = await readdir(dir).catch(() => [] as string[]);
  const own = names.filter((n) => n.startsWith(prefix) && /^\d+\.(?:out|err)$/.test(n.slice(prefix.length)));
  await Promise.all(own.map((n) => rm(join(dir, n), { force: true })));
}

/**
 * Removes the files of every deployment but `kept` (their ids as replicaFileName makes
 * them): those of deployments that left the desired state while no gateway ran.
 */
export async function removeOtherLogs(dir: string, kept: ReadonlySet<string>): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const gone = names.filter((n) => {
    const m = /^(.+)_\d+\.(?:out|err)$/.exec(n);
    return m !== null && !kept.has(m[1]!);
  });
  await Promise.all(gone.map((n) => rm(join(dir, n), { force: true })));
}

/** Opens both files for appending, for a child's stdio; the caller closes the fds after spawn. */
export function openLogFiles(dir: string, paths: LogFilePaths): [number, number] {
  mkdirSync(dir, { recursive: true });
  const stdout = openSync(paths.stdout, 'a', 0o600);
  try {
    return [stdout, openSync(paths.stderr, 'a', 0o600)];
  } catch (err) {
    closeSync(stdout);
    throw err;
  }
}

/** Follows both files into the LogBuffer from their current end until `stop()`. */
export class LogFileTail {
  readonly #tails: FileTail[];
  #timer: NodeJS.Timeout;
  #stopped = false;

  constructor(paths: LogFilePaths, buffer: LogBuffer) {
    this.#tails = [new FileTail(paths.stdout, 'stdout', buffer), new FileTail(paths.stderr, 'stderr', buffer)];
    this.#timer = this.#schedule(POLL_MS);
  }

  /** Reads what the server wrote since the last poll; the bytes that were new. */
  poll(): number {
    let grown = 0;
    for (const t of this.#tails) grown += t.poll();
    return grown;
  }

  #schedule(ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      if (this.#stopped) return;
      this.#timer = this.#schedule(this.poll() > FAST_GROWTH_BYTES ? FAST_POLL_MS : POLL_MS);
    }, ms);
    timer.unref();
    return timer;
  }

  /** Reads what is left, then closes. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const t of this.#tails) t.close();
  }
}

class FileTail {
  readonly #fd: number | null;
  readonly #lines: LineSplitter;
  readonly #chunk = Buffer.allocUnsafe(READ_BYTES);
  #pos: number;
  #truncating = false;
  #closed = false;

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

  poll(): number {
    const fd = this.#fd;
    if (fd === null) return 0;
    const size = fstatSync(fd).size;
    if (size < this.#pos) this.#pos = 0; // truncated under us
    const grown = size - this.#pos;
    if (grown > MAX_READ_BYTES) {
      this.#lines.skipped(grown - MAX_READ_BYTES);
      this.#pos = size - MAX_READ_BYTES;
    }
    while (this.#pos < size) {
      const n = readSync(fd, this.#chunk, 0, READ_BYTES, this.#pos);
      if (n <= 0) break;
      this.#pos += n;
      this.#lines.write(this.#chunk.toString('utf8', 0, n));
    }
    if (size > MAX_FILE_BYTES && !this.#truncating) {
      // In libuv's pool: freeing a large file's pages takes milliseconds the control plane needs.
      // A poll meanwhile reads on from #pos, or from 0 once the file is shorter than that.
      this.#truncating = true;
      ftruncate(fd, 0, () => {
        this.#truncating = false;
        if (this.#closed) closeSync(fd);
      });
    }
    return grown;
  }

  close(): void {
    this.poll();
    this.#lines.end();
    this.#closed = true;
    // A truncation in flight closes it when done: closed now, the fd number could be reused, and another file truncated.
    if (this.#fd !== null && !this.#truncating) closeSync(this.#fd);
  }
}
