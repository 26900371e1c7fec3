// Many long-lived SSE streams held open through a proxy at once: DESIGN.md's "10,000
// concurrent idle SSE streams in under 1 GiB resident memory", and the cancellation of
// every upstream generation when the clients go. Raw sockets, so that the generator's own
// cost per stream is a socket and a counter.

import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { sleep } from './log.js';
import { openInBatches } from './sockets.js';

export interface OpenStreams {
  readonly requested: number;
  /** Streams whose first SSE event arrived. */
  readonly started: number;
  readonly errors: number;
  /** Seconds from the first connect until every stream had its first event (or the deadline). */
  readonly seconds: number;
  /** Destroys every client socket; returns the SSE events received over the streams' life. */
  close(): number;
}

/** Opens `n` streams (POST `body` to `path`). */
export async function openStreams(port: number, path: string, body: string, n: number, deadlineMs: number): Promise<OpenStreams> {
  const request = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const sockets: Socket[] = [];
  let started = 0;
  let errors = 0;
  let events = 0;
  const began = performance.now();
  const open = (): void => {
    const s = connect(port, '127.0.0.1', () => s.write(request));
    let first = true;
    s.setEncoding('latin1');
    s.on('data', (text: string) => {
      const k = text.split('data: ').length - 1;
      events += k;
      if (first && k > 0) {
        first = false;
        started++;
      }
    });
    s.on('error', () => errors++);
    sockets.push(s);
  };
  await openInBatches(n, open);
  while (started + errors < n && performance.now() - began < deadlineMs) await sleep(100);
  const seconds = (performance.now() - began) / 1000;
  return {
    requested: n,
    started,
    errors,
    seconds,
    close(): number {
      for (const s of sockets) s.destroy();
      return events;
    },
  };
}

/** Resident set of one process, in MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

/** This process's soft limit on open files: a proxy needs two per stream (client and upstream). */
export function openFileLimit(): number {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m === null || m[1] === 'unlimited' ? 1_048_576 : Number(m[1]);
}
