// The client-facing request parser (src/proxy/front-end/request-parser.ts): every framing
// and strictness rule with the status it answers, fed whole and split at every byte (the
// events must not depend on how TCP cut the stream), pipelining, backpressure, chunked
// bodies with extensions and trailers, and the limits.

import t from 'tap';
import { RequestHead, RequestParseError, RequestParser, type RequestParserOptions, type RequestSink } from '../../src/proxy/front-end/request-parser.js';

type Test = typeof t;

interface HeadSummary {
  method: string;
  url: string;
  query: string;
  authority: string;
  versionMinor: number;
  headers: string[];
  contentLength: number;
  chunked: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

type Event = { head: HeadSummary } | { body: string } | 'complete' | { error: number; message: string };

function summary(h: RequestHead): HeadSummary {
  const headers: string[] = [];
  for (let i = 0; i < h.count; i++) headers.push(h.names[i]!, h.value(i));
  return { method: h.method, url: h.url, query: h.query, authority: h.authority, versionMinor: h.versionMinor, headers, contentLength: h.contentLength, chunked: h.chunked, keepAlive: h.keepAlive, expectContinue: h.expectContinue };
}

class Recorder implements RequestSink {
  readonly events: Event[] = [];
  /** Return values for onRequestBody, in turn (true once used up). */
  answers: boolean[] = [];
  onRequestHead(head: RequestHead): void {
    this.events.push({ head: summary(head) });
  }
  onRequestBody(chunk: Buffer): boolean {
    // A view of the input: copied now, as a real consumer would.
    const last = this.events[this.events.length - 1];
    if (typeof last === 'object' && 'body' in last) last.body += chunk.toString('latin1');
    else this.events.push({ body: chunk.toString('latin1') });
    return this.answers.shift() ?? true;
  }
  onRequestComplete(): void {
    this.events.push('complete');
  }
}

/**
 * Feeds `pieces` (each as its own buffer, with stale bytes after it, at a given offset),
 * resetting after each complete request and feeding what follows; stops at the first error.
 */
function run(pieces: Buffer[], options?: RequestParserOptions, offset = 0): Event[] {
  const rec = new Recorder();
  const parser = new RequestParser(rec, options);
  try {
    for (const p of pieces) {
      const data = Buffer.alloc(offset + p.length + STALE.length);
      p.copy(data, offset);
      STALE.copy(data, offset + p.length);
      let pos = offset;
      const end = offset + p.length;
      while (pos < end) {
        const next = parser.execute(data, pos, end);
        if (next < pos || next > end) throw new Error(`execute returned ${next} for [${pos}, ${end})`);
        pos = next;
        if (parser.done) parser.reset();
      }
    }
  } catch (err) {
    if (!(err instanceof RequestParseError)) throw err;
    rec.events.push({ error: err.status, message: err.message });
  }
  return rec.events;
}

// Bytes past `end` that a parser must never read as part of the request.
const STALE = Buffer.from('\r\n\r\nGET /stale HTTP/1.1\r\ncontent-length: 5\r\n\r\nstale0\r\n\r\n');

function splits(raw: Buffer): Array<{ name: string; pieces: Buffer[] }> {
  const out: Array<{ name: string; pieces: Buffer[] }> = [];
  for (let i = 1; i < raw.length; i++) out.push({ name: `split at ${i}`, pieces: [raw.subarray(0, i), raw.subarray(i)] });
  out.push({ name: 'byte by byte', pieces: [...raw].map((b) => Buffer.from([b])) });
  return out;
}

/** The events of `raw`, the same fed whole, at offsets 1-3, and split at every byte. */
function check(t: Test, name: string, raw: string, expected: Event[], options?: RequestParserOptions): void {
  t.test(name, async (t) => {
    const bytes = Buffer.from(raw, 'latin1');
    t.same(run([bytes], options), expected, 'fed whole');
    for (const offset of [1, 2, 3]) t.same(run([bytes], options, offset), expected, `fed whole at offset ${offset}`);
    let mismatches = 0;
    for (const s of splits(bytes)) {
      const got = run(s.pieces, options);
      if (JSON.stringify(got) !== JSON.stringify(expected) && mismatches++ === 0) t.same(got, expected, s.name);
    }
    t.equal(mismatches, 0, `same events for all ${bytes.length} splits`);
  });
}

/** A request refused with `status`, however it is cut. */
function refuse(t: Test, name: string, raw: string, status: number, options?: RequestParserOptions): void {
  t.test(`${status}: ${name}`, async (t) => {
    const bytes = Buffer.from(raw, 'latin1');
    const ways = [{ name: 'whole', pieces: [bytes] }, ...splits(bytes)];
    let wrong = 0;
    for (const w of ways) {
      const events = run(w.pieces, options);
      const last = events[events.length - 1];
      const ok = typeof last === 'object' && 'error' in last && last.error === status && !events.some((e) => e === 'complete');
      if (!ok && wrong++ === 0) t.fail(`${w.name}: ${JSON.stringify(events)}`);
      if (typeof last === 'object' && 'error' in last && /[\x00-\x1f\x7f-\xff]/.test(last.message)) t.fail(`message has raw bytes: ${JSON.stringify(last.message)}`);
    }
    t.equal(wrong, 0, `refused with ${status} however cut`);
  });
}

const head = (over: Partial<HeadSummary> & { headers: string[] }): Event => {
  const h = { method: 'GET', url: '/', query: '', authority: '', versionMinor: 1, contentLength: -1, chunked: false, keepAlive: true, expectContinue: false, ...over };
  // The key order of summary(), so that events compare as JSON.
  return { head: { method: h.method, url: h.url, query: h.query, authority: h.authority, versionMinor: h.versionMinor, headers: h.headers, contentLength: h.contentLength, chunked: h.chunked, keepAlive: h.keepAlive, expectContinue: h.expectContinue } };
};
const body = (text: string): Event => ({ body: text });

// ---------------------------------------------------------------------------------------
// What a client sends.

const SDK_HEAD =
  'POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\nAccept: application/json\r\nContent-Type: application/json\r\n' +
  'User-Agent: OpenAI/JS 6.49.0\r\nX-Stainless-Lang: js\r\nX-Stainless-OS: Linux\r\nAuthorization: Bearer sk-test\r\nX-Stainless-Retry-Count: 0\r\nAccept-Encoding: gzip, deflate\r\n';
const SDK_BODY = '{"model":"m","messages":[{"role":"user","content":"hi \xe9"}],"stream":true}';

check(t, 'an OpenAI SDK POST with a JSON body',
  `${SDK_HEAD}Content-Length: ${SDK_BODY.length}\r\n\r\n${SDK_BODY}`,
  [
    head({
      method: 'POST', url: '/v1/chat/completions', contentLength: SDK_BODY.length,
      headers: ['host', 'localhost:8080', 'connection', 'keep-alive', 'accept', 'application/json', 'content-type', 'application/json', 'user-agent', 'OpenAI/JS 6.49.0',
        'x-stainless-lang', 'js', 'x-stainless-os', 'Linux', 'authorization', 'Bearer sk-test', 'x-stainless-retry-count', '0', 'accept-encoding', 'gzip, deflate', 'content-length', String(SDK_BODY.length)],
    }),
    body(SDK_BODY),
    'complete',
  ]);

check(t, 'a GET without a body completes at once',
  'GET /v1/models?limit=5&x=a?b HTTP/1.1\r\nHost: h\r\n\r\n',
  [head({ url: '/v1/models', query: 'limit=5&x=a?b', headers: ['host', 'h'] }), 'complete']);

check(t, 'no header lines at all (a missing Host is accepted)', 'GET / HTTP/1.1\r\n\r\n', [head({ headers: [] }), 'complete']);

check(t, 'values are trimmed of SP and HTAB, kept inside; names lower-cased; obs-text kept as latin1',
  "GET / HTTP/1.1\r\nX-A:   a  b \t\r\nX-EMPTY:\r\nx-b:\t\xe9\xff\r\n!#$%&'*+-.^_`|~:ok\r\n\r\n",
  [head({ headers: ['x-a', 'a  b', 'x-empty', '', 'x-b', '\xe9\xff', "!#$%&'*+-.^_`|~", 'ok'] }), 'complete']);

check(t, 'the method keeps its case; any token is a method',
  'purge /x HTTP/1.1\r\n\r\nM-SEARCH /y HTTP/1.1\r\n\r\n',
  [head({ method: 'purge', url: '/x', headers: [] }), 'complete', head({ method: 'M-SEARCH', url: '/y', headers: [] }), 'complete']);

check(t, 'OPTIONS * and absolute-form targets',
  'OPTIONS * HTTP/1.1\r\n\r\nGET http://h:1/p?q HTTP/1.1\r\n\r\nGET HTTPS://example.com HTTP/1.1\r\n\r\nGET http://e.com?x=1 HTTP/1.1\r\n\r\n',
  [
    head({ method: 'OPTIONS', url: '*', headers: [] }), 'complete',
    head({ url: '/p', query: 'q', authority: 'h:1', headers: [] }), 'complete',
    head({ url: '/', authority: 'example.com', headers: [] }), 'complete',
    head({ url: '/', query: 'x=1', authority: 'e.com', headers: [] }), 'complete',
  ]);

check(t, 'empty lines before the request line are ignored',
  '\r\n\r\nGET / HTTP/1.1\r\n\r\n',
  [head({ headers: [] }), 'complete']);

t.test('idle: true until a byte of the request line is consumed (leading empty lines do not count)', async (t) => {
  const parser = new RequestParser(new Recorder());
  t.ok(parser.idle);
  t.equal(parser.execute(Buffer.from('\r\n\r'), 0, 3), 3);
  t.ok(parser.idle, 'after empty lines');
  t.equal(parser.execute(Buffer.from('\nG'), 0, 2), 2);
  t.notOk(parser.idle, 'after the first byte of the method');
  parser.execute(Buffer.from('ET / HTTP/1.1\r\n\r\n'), 0, 17);
  t.ok(parser.done);
  parser.reset();
  t.ok(parser.idle, 'after reset');
});

// Keep-alive and Expect.
check(t, 'HTTP/1.1 keeps alive unless Connection lists close (any case, in a list)',
  'GET / HTTP/1.1\r\nConnection: x-foo, Close\r\n\r\n',
  [head({ headers: ['connection', 'x-foo, Close'], keepAlive: false }), 'complete']);
check(t, 'Connection: closed is not close',
  'GET / HTTP/1.1\r\nConnection: closed\r\n\r\n',
  [head({ headers: ['connection', 'closed'] }), 'complete']);
check(t, 'HTTP/1.0 closes unless Connection lists keep-alive',
  'GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n',
  [
    head({ versionMinor: 0, keepAlive: false, headers: [] }), 'complete',
    head({ versionMinor: 0, keepAlive: true, headers: ['connection', 'Keep-Alive'] }), 'complete',
    head({ versionMinor: 0, keepAlive: false, headers: ['connection', 'keep-alive', 'connection', 'close'] }), 'complete',
  ]);
check(t, 'Expect: 100-continue (any case) in HTTP/1.1 only',
  'POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nxPOST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\ny',
  [
    head({ method: 'POST', headers: ['expect', '100-Continue', 'content-length', '1'], contentLength: 1, expectContinue: true }), body('x'), 'complete',
    head({ method: 'POST', versionMinor: 0, keepAlive: false, headers: ['expect', '100-continue', 'content-length', '1'], contentLength: 1 }), body('y'), 'complete',
  ]);

// Content-Length.
check(t, 'Content-Length: repeated identical values are one',
  'POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 003\r\nContent-Length: 3, 3,3\r\n\r\nabc',
  [head({ method: 'POST', headers: ['content-length', '3', 'content-length', '003', 'content-length', '3, 3,3'], contentLength: 3 }), body('abc'), 'complete']);
check(t, 'Content-Length: 0 completes at once',
  'POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n',
  [head({ method: 'POST', headers: ['content-length', '0'], contentLength: 0 }), 'complete']);
for (const [name, value] of [['differing values', '3\r\nContent-Length: 4'], ['a list of differing values', '3, 4'], ['a sign', '+3'], ['a negative', '-3'], ['a space inside', '3 3'],
  ['hex', '0x3'], ['empty', ''], ['16 digits', '0000000000000003'], ['a trailing comma', '3,'], ['a leading comma', ',3'], ['a decimal point', '3.0']] as const) {
  refuse(t, `Content-Length with ${name}`, `POST / HTTP/1.1\r\nContent-Length: ${value}\r\n\r\nabcd`, 400);
}

// Transfer-Encoding.
check(t, 'chunked, in any case, with extensions and trailers',
  'POST /c HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n5;a=b;c="q \\" s" ; d\r\nhello\r\nA\r\n0123456789\r\n0;last\r\nX-Checksum: abc\r\nX-Other:\t1\r\n\r\n',
  [head({ method: 'POST', url: '/c', headers: ['transfer-encoding', 'Chunked'], chunked: true }), body('hello0123456789'), 'complete']);
check(t, 'chunked with no trailers and an empty body',
  'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n000\r\n\r\n',
  [head({ method: 'POST', headers: ['transfer-encoding', 'chunked'], chunked: true }), 'complete']);
refuse(t, 'gzip, chunked (a coding sluice does not implement)', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501);
refuse(t, 'gzip then chunked on two lines', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 501);
for (const [name, te] of [['chunked not last', 'chunked, gzip'], ['gzip alone', 'gzip'], ['chunked twice', 'chunked, chunked'], ['xchunked', 'xchunked'], ['"chunked "', 'chunked x'],
  ['chunked with a parameter', 'chunked;q=1'], ['an empty value', ''], ['an empty element', 'chunked,'], ['a leading empty element', ', chunked'], ['a quoted coding', '"chunked"']] as const) {
  refuse(t, `Transfer-Encoding: ${name}`, `POST / HTTP/1.1\r\nTransfer-Encoding: ${te}\r\n\r\n0\r\n\r\n`, 400);
}
refuse(t, 'Transfer-Encoding with Content-Length (CL.TE)', 'POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400);
refuse(t, 'Content-Length after Transfer-Encoding (TE.CL)', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n', 400);
refuse(t, 'Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400);
refuse(t, 'Transfer-Encoding : chunked (space before the colon)', 'POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400);

// Chunked body errors.
for (const [name, chunks] of [['a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'], ['a negative size', '-5\r\nhello\r\n0\r\n\r\n'], ['no size', '\r\nhello\r\n0\r\n\r\n'],
  ['a size above 2^53/16', '20000000000000\r\nx'], ['LF-only after the size', '5\nhello\r\n0\r\n\r\n'], ['no CRLF after the data', '5\r\nhelloX\r\n0\r\n\r\n'],
  ['LF-only after the data', '5\r\nhello\n0\r\n\r\n'], ['a bad extension', '5;a@b\r\nhello\r\n0\r\n\r\n'], ['an unterminated quoted extension', '5;a="x\r\nhello\r\n0\r\n\r\n'],
  ['a leading space before the size', ' 5\r\nhello\r\n0\r\n\r\n'], ['a bare LF trailer line', '0\r\nX: y\n\r\n'], ['a trailer without a colon', '0\r\nXy\r\n\r\n'],
  ['a folded trailer', '0\r\nX: y\r\n z\r\n\r\n'], ['Content-Length in the trailers', '0\r\nContent-Length: 5\r\n\r\n'], ['a NUL in a trailer', '0\r\nX: \x00\r\n\r\n'],
  ['LF-only after the last chunk', '0\r\n\n']] as const) {
  refuse(t, `chunked body with ${name}`, `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`, 400);
}
refuse(t, 'chunk extensions above 16 KiB', `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=${'x'.repeat(16 * 1024)}\r\nx\r\n0\r\n\r\n`, 400);
check(t, 'chunk extensions up to 16 KiB',
  `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=${'x'.repeat(16 * 1024 - 3)}\r\nx\r\n0\r\n\r\n`,
  [head({ method: 'POST', headers: ['transfer-encoding', 'chunked'], chunked: true }), body('x'), 'complete']);

// The request line.
for (const [name, line] of [['HTTP/2.0', 'GET / HTTP/2.0'], ['HTTP/0.9', 'GET / HTTP/0.9'], ['HTTP/1.2', 'GET / HTTP/1.2'], ['HTTP/3.1', 'GET / HTTP/3.1'], ['PRI * HTTP/2.0', 'PRI * HTTP/2.0']] as const) {
  refuse(t, `version ${name}`, `${line}\r\n\r\n`, 505);
}
for (const [name, line] of [['two spaces after the method', 'GET  / HTTP/1.1'], ['two spaces before the version', 'GET /  HTTP/1.1'], ['a tab', 'GET\t/ HTTP/1.1'],
  ['no version', 'GET /'], ['lower-case http', 'GET / http/1.1'], ['HTTP/1.x', 'GET / HTTP/1.x'], ['HTTP/11', 'GET / HTTP/11'], ['a trailing space', 'GET / HTTP/1.1 '],
  ['a non-token method', 'G(T / HTTP/1.1'], ['a NUL in the target', 'GET /a\x00 HTTP/1.1'], ['a DEL in the target', 'GET /a\x7f HTTP/1.1'], ['obs-text in the target', 'GET /\xe9 HTTP/1.1'],
  ['a fragment', 'GET /a#b HTTP/1.1'], ['an authority-form target', 'GET h:80 HTTP/1.1'], ['a relative target', 'GET a/b HTTP/1.1'], ['* with GET', 'GET * HTTP/1.1'],
  ['userinfo in an absolute target', 'GET http://u@h/ HTTP/1.1'], ['an absolute target without an authority', 'GET http:///p HTTP/1.1'], ['an ftp target', 'GET ftp://h/ HTTP/1.1'],
  ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6'], ['no method', ' / HTTP/1.1']] as const) {
  refuse(t, `request line with ${name}`, `${line}\r\nHost: h\r\n\r\n`, 400);
}
refuse(t, 'CONNECT (no tunnels)', 'CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n', 501);
refuse(t, 'a bare LF ending the request line', 'GET / HTTP/1.1\nHost: h\r\n\r\n', 400);
refuse(t, 'a bare LF before the request line', '\nGET / HTTP/1.1\r\n\r\n', 400);
refuse(t, 'a bare CR before the request line', '\rGET / HTTP/1.1\r\n\r\n', 400);

// Header lines.
for (const [name, line] of [['whitespace before the colon', 'X-A : b'], ['a tab before the colon', 'X-A\t: b'], ['no colon', 'X-A b'], ['an empty name', ': b'],
  ['a non-token name', 'X(A): b'], ['obs-text in a name', 'X\xe9: b'], ['a NUL in a value', 'X-A: a\x00b'], ['a DEL in a value', 'X-A: a\x7fb'], ['a control in a value', 'X-A: a\x01b'],
  ['a bare CR in a value', 'X-A: a\rb'], ['a bare LF ending a line', 'X-A: b\nX-B: c'], ['a VT in a value', 'X-A: \x0b'], ['two Host lines', 'Host: a\r\nHost: a']] as const) {
  refuse(t, `header line with ${name}`, `GET / HTTP/1.1\r\n${line}\r\n\r\n`, 400);
}
refuse(t, 'an obs-fold line', 'GET / HTTP/1.1\r\nX-A: b\r\n  c\r\n\r\n', 400);
refuse(t, 'an obs-fold line with HTAB', 'GET / HTTP/1.1\r\nX-A: b\r\n\tc\r\n\r\n', 400);
refuse(t, 'a head ending in LF LF', 'GET / HTTP/1.1\r\nX-A: b\n\n', 400);

// Limits.
const small = { maxHeadBytes: 64, maxHeaders: 3 };
const fits = 'GET / HTTP/1.1\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n';
check(t, 'a head of exactly maxHeadBytes with maxHeaders lines', `${fits.slice(0, -4)}${'x'.repeat(64 - fits.length)}\r\n\r\n`,
  [head({ headers: ['x-a', '1', 'x-b', '2', 'x-c', `3${'x'.repeat(64 - fits.length)}`] }), 'complete'], small);
refuse(t, 'a head one byte above maxHeadBytes', `${fits.slice(0, -4)}${'x'.repeat(65 - fits.length)}\r\n\r\n`, 431, small);
refuse(t, 'empty lines and a head above maxHeadBytes together', `\r\n${fits.slice(0, -4)}${'x'.repeat(63 - fits.length)}\r\n\r\n`, 431, small);
refuse(t, 'too many empty lines', '\r\n'.repeat(33), 431, small);
refuse(t, 'more than maxHeaders lines', 'GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n', 431, small);
refuse(t, 'a head that never ends', `GET / HTTP/1.1\r\nX-A: ${'a'.repeat(100)}`, 431, small);
refuse(t, 'trailers beyond maxHeadBytes with the head', `POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'t'.repeat(20)}\r\n\r\n`, 431, small);
t.test('the default limits: 16 KiB of head, 100 header lines', async (t) => {
  const lines = (n: number): string => Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join('');
  t.same(run([Buffer.from(`GET / HTTP/1.1\r\n${lines(100)}\r\n`)]).slice(-1), ['complete']);
  t.match(run([Buffer.from(`GET / HTTP/1.1\r\n${lines(101)}\r\n`)]).slice(-1), [{ error: 431 }]);
  const pad = (n: number): string => `GET / HTTP/1.1\r\nX: ${'a'.repeat(n - 23)}\r\n\r\n`;
  t.same(run([Buffer.from(pad(16384))]).slice(-1), ['complete']);
  t.match(run([Buffer.from(pad(16385))]).slice(-1), [{ error: 431 }]);
  t.match(run([Buffer.from(pad(16385)).subarray(0, 16384), Buffer.from(pad(16385)).subarray(16384)]).slice(-1), [{ error: 431 }], 'split');
  t.throws(() => new RequestParser(new Recorder(), { maxHeadBytes: 0 }), RangeError);
});
t.test('bad bytes are refused before the head ends when they arrive with its start', async (t) => {
  const rec = new Recorder();
  const parser = new RequestParser(rec);
  t.throws(() => parser.execute(Buffer.from('GET / HTTP/1.1\r\nX-A: \x00'), 0, 22), new RequestParseError(400, 'control character in a header value'));
  const split = new RequestParser(rec);
  split.execute(Buffer.from('GET / HTTP/1.1\r\nX-A: a'), 0, 22);
  t.throws(() => split.execute(Buffer.from('b\r\nX-B: \x7f\r\n'), 0, 13), new RequestParseError(400, 'control character in a header value'), 'in a later piece that ends a line');
});

// ---------------------------------------------------------------------------------------
// Pipelining and backpressure.

t.test('pipelined requests in one buffer: execute stops after each, reset, go on', async (t) => {
  const raw = Buffer.from('POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nGET /d HTTP/1.1\r\n\r\n');
  const rec = new Recorder();
  const parser = new RequestParser(rec);
  const stops: number[] = [];
  let pos = 0;
  while (pos < raw.length) {
    pos = parser.execute(raw, pos, raw.length);
    t.ok(parser.done, `done at ${pos}`);
    stops.push(pos);
    t.equal(parser.execute(raw, pos, raw.length), pos, 'a done parser consumes nothing');
    parser.reset();
  }
  t.same(stops, [raw.indexOf('GET /b'), raw.indexOf('POST /c'), raw.indexOf('GET /d'), raw.length]);
  t.same(rec.events.filter((e) => typeof e === 'object' && 'head' in e).map((e) => (e as { head: HeadSummary }).head.url), ['/a', '/b', '/c', '/d']);
  t.same(rec.events.filter((e) => typeof e === 'object' && 'body' in e), [body('ok'), body('z')]);
});

check(t, 'pipelined requests, split anywhere',
  'POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nok\r\nGET /b?x HTTP/1.1\r\nHost: h\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n',
  [
    head({ method: 'POST', url: '/a', headers: ['content-length', '2'], contentLength: 2 }), body('ok'), 'complete',
    head({ url: '/b', query: 'x', headers: ['host', 'h'] }), 'complete',
    head({ method: 'POST', url: '/c', headers: ['transfer-encoding', 'chunked'], chunked: true }), body('z'), 'complete',
  ]);

t.test('backpressure: the sink returns false mid-body, execute returns right after that piece, resuming gives the rest', async (t) => {
  const raw = Buffer.from('POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6;x\r\n456789\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n');
  const rec = new Recorder();
  const parser = new RequestParser(rec);
  rec.answers = [false, false];
  let pos = parser.execute(raw, 0, raw.length);
  t.equal(pos, raw.indexOf('0123') + 4, 'stops right after the first piece');
  t.notOk(parser.done);
  pos = parser.execute(raw, pos, raw.length);
  t.equal(pos, raw.indexOf('456789') + 6, 'then after the second');
  pos = parser.execute(raw, pos, raw.length);
  t.ok(parser.done);
  t.equal(pos, raw.indexOf('GET /next'), 'then after the request');
  t.same(rec.events.slice(1), [body('0123456789'), 'complete']);

  // Content-Length: a paused piece that ends the body still completes the request.
  const cl = Buffer.from('POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\n\r\n');
  const rec2 = new Recorder();
  const parser2 = new RequestParser(rec2);
  rec2.answers = [false, false];
  const cut = cl.indexOf('0123') + 3;
  t.equal(parser2.execute(cl, 0, cut), cut, 'a read that ends in the body is consumed');
  t.notOk(parser2.done);
  t.equal(parser2.execute(cl, cut, cl.length), cl.indexOf('GET /next'));
  t.ok(parser2.done);
  t.same(rec2.events.slice(1), [body('0123456789'), 'complete']);
});

t.test('body pieces are views of the input, not copies', async (t) => {
  const raw = Buffer.from('POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello');
  let view: Buffer | null = null;
  const parser = new RequestParser({ onRequestHead() {}, onRequestBody: (c) => ((view = c), true), onRequestComplete() {} });
  parser.execute(raw, 0, raw.length);
  t.equal(view!.buffer, raw.buffer);
  t.equal(view!.toString(), 'hello');
});

t.test('the head object and its arrays are reused across requests', async (t) => {
  const heads: RequestHead[] = [];
  const parser = new RequestParser({ onRequestHead: (h) => void heads.push(h), onRequestBody: () => true, onRequestComplete() {} });
  const raw = Buffer.from('GET /1 HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\nGET /2 HTTP/1.1\r\nC: 3\r\n\r\n');
  let pos = parser.execute(raw, 0, raw.length);
  parser.reset();
  const names = heads[0]!.names;
  pos = parser.execute(raw, pos, raw.length);
  t.equal(pos, raw.length);
  t.equal(heads[0], heads[1]);
  t.equal(heads[1]!.names, names);
  t.equal(heads[1]!.count, 1);
  t.same(heads[1]!.names.slice(0, 1), ['c']);
});

t.test('a thrown error is a RequestParseError with a status and plain words', async (t) => {
  const parser = new RequestParser(new Recorder());
  const err = t.throws(() => parser.execute(Buffer.from('GET / HTTP/2.0\r\n\r\n'), 0, 18)) as unknown;
  t.ok(err instanceof RequestParseError);
  t.equal((err as RequestParseError).status, 505);
  t.equal((err as RequestParseError).message, 'HTTP version not supported');
});

t.test('names are lower-cased exactly, whatever names of the same length came before (the name cache folds case four bytes a step)', async (t) => {
  // Pairs that differ only where case folding by OR 0x20 could blur them: case, '^' / '~',
  // '_' , the last one to three bytes, the first word.
  const sent = [
    'X-Ab^c', 'x-ab~c', 'X-AB~C', 'x-ab^c', 'X_Yz', 'x_yz', 'X_YZ', 'Content-Type', 'content-typf', 'CONTENT-TYPE', 'Bontent-Type',
    'x-stainless-arch', 'X-Stainless-Lang', 'x-stainless-arcH', 'a', 'A', 'b', 'ab', 'aB', 'Ab', 'abc', 'abC', 'abd', 'abcde', 'abcdE', 'abcdf',
  ];
  const seen: string[] = [];
  const parser = new RequestParser({ onRequestHead: (h) => void seen.push(...h.names.slice(0, h.count)), onRequestBody: () => true, onRequestComplete() {} });
  // Each name twice, in its own request, so that each is compared with every name kept before it.
  for (const round of [0, 1]) {
    for (const name of sent) {
      const raw = Buffer.from(`GET /${round} HTTP/1.1\r\n${name}: v\r\n\r\n`, 'latin1');
      parser.execute(raw, 0, raw.length);
      parser.reset();
    }
  }
  const lower = sent.map((n) => n.toLowerCase());
  t.same(seen, [...lower, ...lower]);
});
