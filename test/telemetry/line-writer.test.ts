// The buffered writer behind every log line (src/telemetry/line-writer.ts): lines are
// encoded into 64 KiB chunks as they come, so the order, the bytes and the count of what
// reaches the file must survive chunk boundaries, lines longer than a chunk, characters
// that take several bytes in UTF-8, and the synchronous flush of a crashing thread.

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LineWriter } from '../../src/telemetry/line-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-line-writer-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function sink(): { fd: number; path: string } {
  const path = join(dir, `out-${files++}.log`);
  return { fd: openSync(path, 'w'), path };
}

/** Lines of every kind: short, multi-byte, and (every 500th) longer than a chunk. */
function lineOf(i: number): string {
  if (i % 500 === 499) return `{"i":${i},"long":"${'x'.repeat(70_000 + i)}"}\n`;
  if (i % 3 === 0) return `{"i":${i},"path":"/café/模型/${i}"}\n`;
  return `{"i":${i},"request_id":"0b7f3c2e-1a2b-4c3d-8e4f-${String(i).padStart(12, '0')}"}\n`;
}

t.test('every line reaches the file whole and in order, across chunks and with long and multi-byte lines', async (t) => {
  const { fd, path } = sink();
  const writer = new LineWriter({ fd, bufferBytes: 64 * 1024, maxBufferBytes: 64 * 1024 * 1024, flushIntervalMs: 0 });
  const expected: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const line = lineOf(i);
    expected.push(line);
    writer.write(line);
    // Let some writes complete between bursts, so that lines also arrive while one is in progress.
    if (i % 700 === 0) await new Promise((r) => setImmediate(r));
  }
  await writer.close(5000);
  closeSync(fd);
  t.equal(writer.dropped, 0, 'nothing dropped');
  t.equal(writer.lines, 5000, 'every line counted as written');
  const got = readFileSync(path, 'utf8');
  t.equal(got.length, expected.join('').length, 'as many characters as were written');
  t.ok(got === expected.join(''), 'the same text, in the same order');
});

t.test('bufferBytes 0 writes each line at once', async (t) => {
  const { fd, path } = sink();
  const writer = new LineWriter({ fd, bufferBytes: 0, maxBufferBytes: 1024 * 1024, flushIntervalMs: 0 });
  writer.write('{"first":true}\n');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(readFileSync(path, 'utf8'), '{"first":true}\n', 'written without a flush or a close');
  writer.write('{"second":"é"}\n');
  await writer.close(1000);
  closeSync(fd);
  t.equal(readFileSync(path, 'utf8'), '{"first":true}\n{"second":"é"}\n');
  t.equal(writer.lines, 2);
});

t.test('flushSync writes what waits, in order, without the event loop', async (t) => {
  const { fd, path } = sink();
  const writer = new LineWriter({ fd, bufferBytes: 1024 * 1024, maxBufferBytes: 64 * 1024 * 1024, flushIntervalMs: 0 });
  const expected: string[] = [];
  for (let i = 0; i < 2000; i++) {
    expected.push(lineOf(i));
    writer.write(lineOf(i));
  }
  writer.flushSync();
  closeSync(fd);
  t.ok(readFileSync(path, 'utf8') === expected.join(''), 'every line, in order');
  t.equal(writer.lines, 2000);
});

t.test('beyond maxBufferBytes waiting, lines are dropped and counted, and the rest still goes out', async (t) => {
  const { fd, path } = sink();
  const writer = new LineWriter({ fd, bufferBytes: 1024 * 1024, maxBufferBytes: 4096, flushIntervalMs: 0 });
  const line = `${'y'.repeat(99)}\n`;
  for (let i = 0; i < 100; i++) writer.write(line);
  t.equal(writer.dropped, 100 - 40, '40 lines of 100 bytes fit in 4096 bytes');
  await writer.close(1000);
  closeSync(fd);
  t.equal(readFileSync(path, 'utf8'), line.repeat(40));
  t.equal(writer.lines, 40);
});

t.test('lines put together as bytes (beginLine, endLine) go in order with written ones, across chunks, and are dropped the same way', async (t) => {
  const { fd, path } = sink();
  const writer = new LineWriter({ fd, bufferBytes: 64 * 1024, maxBufferBytes: 64 * 1024 * 1024, flushIntervalMs: 0 });
  const expected: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const line = lineOf(i);
    expected.push(line);
    if (i % 2 === 0) {
      writer.write(line);
      continue;
    }
    const bytes = Buffer.from(line, 'utf8');
    // Room asked for beyond what the line takes, as the access log asks for its longest line.
    const buf = writer.beginLine(bytes.length + 64);
    if (buf === null) throw new Error(`line ${i} dropped`);
    const start = writer.lineStart;
    bytes.copy(buf, start);
    writer.endLine(start + bytes.length);
    if (i % 700 === 1) await new Promise((r) => setImmediate(r));
  }
  await writer.close(5000);
  closeSync(fd);
  t.equal(writer.lines, 3000, 'every line counted as written');
  t.ok(readFileSync(path, 'utf8') === expected.join(''), 'the same text, in the same order');

  const small = sink();
  const bounded = new LineWriter({ fd: small.fd, bufferBytes: 1024 * 1024, maxBufferBytes: 4096, flushIntervalMs: 0 });
  let given = 0;
  for (let i = 0; i < 100; i++) {
    const buf = bounded.beginLine(100);
    if (buf === null) continue;
    const at = buf.write(`${'z'.repeat(99)}\n`, bounded.lineStart, 'latin1');
    bounded.endLine(bounded.lineStart + at);
    given++;
  }
  t.equal(given, 40, '40 lines of 100 bytes fit in 4096 bytes');
  t.equal(bounded.dropped, 60, 'the others are dropped and counted');
  await bounded.close(1000);
  closeSync(small.fd);
  t.equal(readFileSync(small.path, 'utf8'), `${'z'.repeat(99)}\n`.repeat(40));
});
