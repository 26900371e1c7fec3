// Reads stamped SSE streams (bench/stamp-server.ts) through a target and measures how long
// each chunk took from the upstream's write to this process's read.

import { connect, type Socket } from 'node:net';
import { sleep } from './log.js';
import { openInBatches } from './sockets.js';
import { percentile } from './stats.js';

export interface ChunkLatency {
  readonly chunks: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly p999_us: number;
  readonly max_us: number;
  /** Streams that ended or failed before the measurement did. */
  readonly broken_streams: number;
}

const STAMP = /"t":(\d+)/g;
/** The stamp clock: process.hrtime (monotonic, the same for every process), in µs. */
export const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

/**
 * Opens `streams` streams to `port` + `path`, lets them settle for `settleMs`, then records
 * every chunk's latency for `seconds`, and closes them.
 */
export async function measureChunkLatency(port: number, path: string, streams: number, seconds: number, settleMs = 1000): Promise<ChunkLatency> {
  const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`;
  const samples: number[] = [];
  let recording = false;
  let broken = 0;
  const sockets: Socket[] = [];
  await openInBatches(streams, () => {
    const s = connect(port, '127.0.0.1', () => s.write(request));
    s.setEncoding('latin1');
    s.on('data', (text: string) => {
      if (!recording) return;
      const now = nowUs();
      for (const m of text.matchAll(STAMP)) samples.push(now - Number(m[1]));
    });
    s.on('error', () => {});
    s.on('close', () => {
      if (recording) broken++;
    });
    sockets.push(s);
  });
  await sleep(settleMs);
  recording = true;
  await sleep(seconds * 1000);
  recording = false;
  for (const s of sockets) s.destroy();
  const sorted = Float64Array.from(samples).sort();
  return {
    chunks: sorted.length,
    p50_us: Math.round(percentile(sorted, 50)),
    p99_us: Math.round(percentile(sorted, 99)),
    p999_us: Math.round(percentile(sorted, 99.9)),
    max_us: sorted.length === 0 ? NaN : Math.round(sorted[sorted.length - 1]!),
    broken_streams: broken,
  };
}
