// The upstream response parser, fed each message whole and then split at every byte
// boundary (and byte by byte): the events that come out must not depend on how TCP cut
// the stream. Body events are merged before comparing, since a split body arrives in more
// pieces by design.

import t from 'tap';
import type { HeaderLines } from '../../src/proxy/upstream/header-lines.js';
import { ParseError, ResponseParser, type ResponseSink } from '../../src/proxy/upstream/response-parser.js';

type Test = typeof t;

type Event =
  | { type: 'head'; status: number; headers: string[]; contentLength: number; chunked: boolean }
  | { type: 'body'; text: string }
  | { type: 'complete' }
  | { type: 'error'; message: string }
  | { type: 'leftover'; bytes: number }
  | { type: 'eof'; completed: boolean };

class Recorder implements ResponseSink {
  readonly events: Event[] = [];
  onHead(status: number, lines: HeaderLines, contentLength: number, chunked: boolean): void {
    this.events.push({ type: 'head', status, headers: lines.toArray(), contentLength, chunked });
  }
  onBody(chunk: Buffer): void {
    // Body chunks are views of the input: copy the text now, as a real consumer would.
    const last = this.events[this.events.length - 1];
    if (last?.type === 'body') last.text += chunk.toString('latin1');
    else this.events.push({ type: 'body', text: chunk.toString('latin1') });
  }
  onComplete(): void {
    this.events.push({ type: 'complete' });
  }
}

interface Feed {
  /** Parser reset flag: the request was HEAD. */
  noBody?: boolean;
  /** Byte offset of each read buffer in its ArrayBuffer (the parser reads aligned buffers a word at a time). */
  offset?: number;
  /** Signal EOF after the bytes (read-until-close bodies). */
  eof?: boolean;
}

// The connection reads every socket into one shared buffer and passes the byte count: the
// bytes past it are stale leftovers of earlier reads. Here they are a complete response
// head and body, so that a parser looking past the count sees plausible, wrong bytes.
const STALE = Buffer.from('HTTP/1.1 500 Stale\r\ncontent-length: 5\r\n\r\nstale\r\n\r\n'.repeat(200));

/** Feeds `pieces` in order, each as a read into the shared buffer; stops at the first parse error, as the connection does. */
function run(pieces: Buffer[], opts: Feed = {}): Event[] {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.reset(opts.noBody ?? false);
  let leftover = 0;
  for (const p of pieces) {
    const read = atOffset(Buffer.concat([p, STALE]), opts.offset ?? 0);
    try {
      leftover += parser.execute(read, p.length);
    } catch (err) {
      const ok = err instanceof ParseError && err.code === 'SLUICE_ERR_UPSTREAM_PROTOCOL';
      sink.events.push({ type: 'error', message: ok ? err.message : `not a ParseError: ${String(err)}` });
      return sink.events;
    }
  }
  if (leftover > 0) sink.events.push({ type: 'leftover', bytes: leftover });
  if (opts.eof) sink.events.push({ type: 'eof', completed: parser.finishAtEof() });
  return sink.events;
}

/** A copy of `bytes` that starts `offset` bytes into its ArrayBuffer. */
function atOffset(bytes: Buffer, offset: number): Buffer {
  const out = Buffer.from(new ArrayBuffer(bytes.length + offset), offset, bytes.length);
  bytes.copy(out);
  return out;
}

/** Every way of cutting `raw` in two, plus one byte per read. */
function splits(raw: Buffer): Array<{ name: string; pieces: Buffer[] }> {
  const out: Array<{ name: string; pieces: Buffer[] }> = [];
  for (let i = 1; i < raw.length; i++) {
    // Copies, so a parser that keeps a view past execute() would be caught.
    out.push({ name: `split at ${i}`, pieces: [Buffer.from(raw.subarray(0, i)), Buffer.from(raw.subarray(i))] });
  }
  out.push({ name: 'byte by byte', pieces: [...raw].map((b) => Buffer.from([b])) });
  return out;
}

function check(t: Test, name: string, raw: string, expected: Event[], opts: Feed = {}): void {
  t.test(name, async (t) => {
    const bytes = Buffer.from(raw, 'latin1');
    t.same(run([bytes], opts), expected, 'fed whole');
    // Read buffers are usually 4-byte aligned and scanned a word at a time; at any other
    // offset the parser goes byte by byte, and must see the same events.
    for (const offset of [1, 2, 3]) t.same(run([bytes], { ...opts, offset }), expected, `fed whole at offset ${offset}`);
    let mismatches = 0;
    for (const s of splits(bytes)) {
      const got = run(s.pieces, opts);
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        if (mismatches++ === 0) t.same(got, expected, s.name);
      }
    }
    t.equal(mismatches, 0, `same events for all ${bytes.length} splits`);
  });
}

const head = (status: number, headers: string[], contentLength: number, chunked = false): Event => ({ type: 'head', status, headers, contentLength, chunked });
const body = (text: string): Event => ({ type: 'body', text });
const complete: Event = { type: 'complete' };

check(t, 'content-length body',
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"hello":"x"}',
  [head(200, ['Content-Type', 'application/json', 'Content-Length', '13'], 13), body('{"hello":"x"}'), complete]);

check(t, 'content-length 0',
  'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n',
  [head(200, ['content-length', '0'], 0), complete]);

check(t, 'header values are trimmed; names keep their case',
  'HTTP/1.1 201 Created\r\nX-Thing:   spaced \t\r\nContent-Length: 2\r\n\r\nok',
  [head(201, ['X-Thing', 'spaced', 'Content-Length', '2'], 2), body('ok'), complete]);

check(t, 'chunked with extensions and trailers',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
    '5;name=value\r\nhello\r\n' +
    '1 ; ext\r\n,\r\n' +
    'A\r\n0123456789\r\n' + // upper-case hex size
    '0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n',
  [head(200, ['Transfer-Encoding', 'chunked'], -1, true), body('hello,0123456789'), complete]);

check(t, 'chunked without trailers, lower-case hex sizes',
  'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n',
  [head(200, ['transfer-encoding', 'chunked'], -1, true), body('hello world'), complete]);

check(t, 'Transfer-Encoding chunked wins over Content-Length',
  'HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
  [head(200, ['Content-Length', '99', 'Transfer-Encoding', 'chunked'], -1, true), body('hi'), complete]);

check(t, 'read until close',
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until the server closes',
  [head(200, ['Content-Type', 'text/plain'], -1), body('streamed until the server closes'), complete, { type: 'eof', completed: true }],
  { eof: true });

check(t, 'HTTP/1.0 response without length reads until close',
  'HTTP/1.0 200 OK\r\n\r\nold',
  [head(200, [], -1), body('old'), complete, { type: 'eof', completed: true }],
  { eof: true });

check(t, '100 Continue and 103 Early Hints before the final head',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  [head(200, ['Content-Length', '2'], 2), body('ok'), complete]);

check(t, 'HEAD response: content-length reported, no body read',
  'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n',
  [head(200, ['Content-Length', '1234'], 1234), complete],
  { noBody: true });

check(t, '204 has no body even with bytes after the head',
  'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\nHTTP',
  [head(204, ['X-A', '1'], -1), complete, { type: 'leftover', bytes: 4 }]);

check(t, 'HEAD response without a content-length reports none (-1), not 0',
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n',
  [head(200, ['Content-Type', 'text/plain'], -1), complete],
  { noBody: true });

check(t, '304 has no body despite its content-length',
  'HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n',
  [head(304, ['Content-Length', '50'], 50), complete]);

check(t, 'bytes after a complete response are reported as leftover',
  'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxyz',
  [head(200, ['Content-Length', '1'], 1), body('x'), complete, { type: 'leftover', bytes: 2 }]);

check(t, 'identical duplicate content-length is accepted',
  'HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc',
  [head(200, ['Content-Length', '3', 'content-length', '3'], 3), body('abc'), complete]);

check(t, 'conflicting content-length is rejected',
  'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
  [{ type: 'error', message: 'conflicting content-length' }]);

check(t, 'non-numeric content-length is rejected',
  'HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nabcd',
  [{ type: 'error', message: 'invalid content-length' }]);

check(t, 'a hexadecimal content-length is rejected (digits only, RFC 9110 8.6)',
  'HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\nabcd',
  [{ type: 'error', message: 'invalid content-length' }]);

check(t, 'negative content-length is rejected',
  'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
  [{ type: 'error', message: 'invalid content-length' }]);

check(t, 'invalid chunk size is rejected',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  [head(200, ['Transfer-Encoding', 'chunked'], -1, true), { type: 'error', message: 'invalid chunk size' }]);

check(t, 'garbage after chunk size digits is rejected',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n',
  [head(200, ['Transfer-Encoding', 'chunked'], -1, true), { type: 'error', message: 'invalid chunk size' }]);

check(t, 'missing CRLF after chunk data is rejected',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n',
  [head(200, ['Transfer-Encoding', 'chunked'], -1, true), body('hi'), { type: 'error', message: 'missing CRLF after chunk' }]);

check(t, 'an absurd chunk size is rejected',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n',
  [head(200, ['Transfer-Encoding', 'chunked'], -1, true), { type: 'error', message: 'chunk size too large' }]);

check(t, 'invalid status line is rejected',
  'HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n',
  [{ type: 'error', message: 'invalid status line' }]);

check(t, 'header line without a colon is rejected',
  'HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n',
  [{ type: 'error', message: 'invalid header line' }]);

check(t, '101 upgrade is refused',
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
  [{ type: 'error', message: 'protocol upgrade is not supported' }]);

check(t, 'a bare LF inside a header line is rejected (no response splitting)',
  'HTTP/1.1 200 OK\r\nx-a: 1\nset-cookie: evil=1\r\ncontent-length: 0\r\n\r\n',
  [{ type: 'error', message: 'bare CR or LF in a header line' }]);

check(t, 'a bare CR inside a header line is rejected',
  'HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\ncontent-length: 0\r\n\r\n',
  [{ type: 'error', message: 'bare CR or LF in a header line' }]);

t.test('keep-alive and reuse across responses', async (t) => {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.reset(false);
  t.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na')), 0);
  t.ok(parser.done);
  t.ok(parser.keepAlive, 'HTTP/1.1 defaults to keep-alive');
  t.ok(parser.headReceived);
  parser.reset(false);
  t.notOk(parser.headReceived, 'reset clears headReceived');
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nb'));
  t.notOk(parser.keepAlive, 'Connection: close');
  parser.reset(false);
  parser.execute(Buffer.from('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nc'));
  t.ok(parser.keepAlive, 'HTTP/1.0 with Connection: keep-alive');
  parser.reset(false);
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\nuntil close'));
  t.notOk(parser.keepAlive, 'a read-until-close body cannot keep the socket');
  t.ok(parser.readsUntilClose);
  t.equal(sink.events.filter((e) => e.type === 'complete').length, 3);
});

t.test('EOF in the middle of a length-delimited body is not a complete response', async (t) => {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.reset(false);
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
  t.notOk(parser.finishAtEof());
  t.notOk(sink.events.some((e) => e.type === 'complete'));
});

t.test('a head larger than 64 KiB is rejected', async (t) => {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.reset(false);
  const big = Buffer.from('HTTP/1.1 200 OK\r\nX-Big: ' + 'a'.repeat(70 * 1024));
  t.throws(() => {
    for (let i = 0; i < big.length; i += 1000) parser.execute(big.subarray(i, i + 1000));
  }, { message: 'response head too large' });
});

// A replica's heads repeat (same Server, type, length; Date changes once a second), so the
// parser remembers the last head and recognises an identical one by comparing bytes. Fed
// as the connection feeds it: every read lands at the start of one shared, aligned buffer.
t.test('a head identical to the last one is recognised, and parses exactly as it did', async (t) => {
  const heads: Array<{ status: number; headers: string[]; contentLength: number; chunked: boolean; repeated: boolean }> = [];
  const bodies: string[] = [];
  let completes = 0;
  const parser = new ResponseParser({
    onHead(status, lines, contentLength, chunked) {
      heads.push({ status, headers: lines.toArray(), contentLength, chunked, repeated: lines.repeated });
    },
    onBody(chunk) {
      bodies.push(chunk.toString('latin1'));
    },
    onComplete() {
      completes++;
    },
  });
  const shared = Buffer.alloc(4096, 0x78);
  const feed = (raw: string, noBody = false): number => {
    parser.reset(noBody);
    const n = shared.write(raw, 0, 'latin1');
    return parser.execute(shared, n);
  };
  const head = (date: string, length: number, extra = ''): string =>
    `HTTP/1.1 200 OK\r\nServer: up\r\nDate: ${date}\r\nContent-Type: application/json\r\n${extra}Content-Length: ${length}\r\n\r\n`;
  const last = () => heads[heads.length - 1]!;

  feed(head('Mon, 1', 5) + 'hello');
  t.equal(last().repeated, false, 'a first head is parsed');
  feed(head('Mon, 1', 5) + 'world');
  t.equal(last().repeated, true, 'the same head again is recognised');
  t.same(heads[1], { ...heads[0], repeated: true }, 'with the same status, lines and framing');
  t.same(bodies.slice(0, 2), ['hello', 'world'], 'and its body framed by the remembered length');
  feed(head('Mon, 2', 5) + 'again');
  t.equal(last().repeated, false, 'one byte different (the Date) is parsed anew');
  t.same(last().headers, ['Server', 'up', 'Date', 'Mon, 2', 'Content-Type', 'application/json', 'Content-Length', '5']);
  feed(head('Mon, 2', 5) + 'xxxxx');
  t.equal(last().repeated, true, 'and then remembered');
  feed(head('Mon, 2', 6) + 'sixsix');
  t.equal(last().repeated, false, 'another length is another head');
  t.equal(last().contentLength, 6);
  t.equal(bodies[bodies.length - 1], 'sixsix');
  t.equal(completes, 5);

  // The framing a remembered head gives: chunked, HEAD (no body), Connection: close.
  const chunked = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n';
  feed(chunked + '3\r\nabc\r\n0\r\n\r\n');
  feed(chunked + '2\r\nde\r\n0\r\n\r\n');
  t.same([heads[heads.length - 2]!.repeated, last().repeated, last().chunked, last().contentLength], [false, true, true, -1]);
  t.same(bodies.slice(-2), ['abc', 'de'], 'a remembered chunked head is followed by chunk decoding');
  t.equal(completes, 7);
  feed(head('Mon, 2', 6), true);
  t.equal(last().repeated, false);
  t.equal(feed(head('Mon, 2', 6), true), 0, 'a HEAD answer with a remembered head ends at the head');
  t.same([last().repeated, last().contentLength], [true, 6]);
  t.ok(parser.done);
  t.equal(completes, 9);
  feed(head('Mon, 3', 1, 'Connection: close\r\n') + 'a');
  feed(head('Mon, 3', 1, 'Connection: close\r\n') + 'b');
  t.equal(last().repeated, true);
  t.notOk(parser.keepAlive, 'Connection: close is remembered with the head');
  feed(head('Mon, 3', 1) + 'c');
  t.ok(parser.keepAlive);

  // A head after a 1xx in the same read starts past 0: parsed, never remembered.
  feed('HTTP/1.1 100 Continue\r\n\r\n' + head('Mon, 3', 1) + 'd');
  feed(head('Mon, 3', 1) + 'e');
  t.equal(last().repeated, false, 'an informational head in between forgets the remembered one');
  feed(head('Mon, 3', 1) + 'f');
  t.equal(last().repeated, true);
  t.same(bodies.slice(-3), ['d', 'e', 'f']);
});
