// Incremental HTTP/1.1 response parser. It hands body bytes out as views of the socket's
// buffers (never copies), decodes chunked framing, and reports the framing facts the
// proxy needs (length, keep-alive). One parser lives per upstream connection and is
// reset per response, so it allocates nothing per response: header lines are offsets
// into the read buffer (HeaderLines).

import { Buffer } from 'node:buffer';
import { ChunkedBody, type ChunkedBodySink } from '../http1/chunked-body.js';
import { TCHAR, ViewCache } from '../http1/bytes.js';
import { HeaderLines } from './header-lines.js';
import { HeaderKind, bytesStartWithName, connectionTokens, kindOfNameBytes, nameBytes } from './header-names.js';

export interface ResponseSink {
  /** `lines` are valid during this call only. */
  onHead(status: number, lines: HeaderLines, contentLength: number, chunked: boolean): void;
  onBody(chunk: Buffer): void;
  onComplete(): void;
}

const MAX_HEAD_BYTES = 64 * 1024;
// A head up to this size is remembered for the next response (see #readHead).
const MEMO_MAX_BYTES = 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const CHUNKED = nameBytes('chunked');
const KEEP_ALIVE = nameBytes('keep-alive');

const enum State {
  Head,
  BodyLength,
  Chunked,
  BodyUntilClose,
  Done,
}


export class ParseError extends Error {
  readonly code = 'SLUICE_ERR_UPSTREAM_PROTOCOL';
}

const views = new ViewCache();
const protocolError = (message: string): ParseError => new ParseError(message);

export class ResponseParser implements ChunkedBodySink {
  #sink: ResponseSink;
  #state = State.Head;
  #partialHead: Buffer | null = null;
  #remaining = 0;
  readonly #chunked = new ChunkedBody(views, protocolError);
  #noBody = false;
  readonly #lines = new HeaderLines();
  // The last final head read at the start of a read, as bytes, with what its parse found (see #readHead).
  readonly #memo = new Uint8Array(MEMO_MAX_BYTES);
  readonly #memoWords = new Int32Array(this.#memo.buffer);
  #memoLength = 0;
  #memoStatus = 0;
  #memoContentLength = -1;
  #memoChunked = false;
  #memoKeepAlive = true;
  keepAlive = true;
  /** True once the status line of a final (non-1xx) response has been read. */
  headReceived = false;

  constructor(sink: ResponseSink) {
    this.#sink = sink;
  }

  /** Prepares for the response to a new request; HEAD responses carry no body. */
  reset(noBody: boolean): void {
    this.#state = State.Head;
    this.#partialHead = null;
    this.#noBody = noBody;
    this.keepAlive = true;
    this.headReceived = false;
  }

  get done(): boolean {
    return this.#state === State.Done;
  }

  /** ChunkedBodySink: a piece of a chunked body goes to the sink as any other. */
  onChunkData(chunk: Buffer): boolean {
    this.#sink.onBody(chunk);
    return true;
  }

  get readsUntilClose(): boolean {
    return this.#state === State.BodyUntilClose;
  }

  /**
   * Feeds `data[0, len)`; returns the number of bytes left over after the response ended
   * (0 normally). Body chunks handed to the sink are views of `data`.
   */
  execute(data: Buffer, len = data.length): number {
    let pos = 0;
    while (pos < len) {
      switch (this.#state) {
        case State.Head:
          pos = this.#readHead(data, pos, len);
          break;
        case State.BodyLength: {
          const n = Math.min(this.#remaining, len - pos);
          this.#remaining -= n;
          const chunk = views.of(data, pos, pos + n);
          pos += n;
          if (this.#remaining === 0) this.#state = State.Done;
          this.#sink.onBody(chunk);
          if (this.#state === State.Done) this.#sink.onComplete();
          break;
        }
        case State.Chunked: {
          const chunked = this.#chunked;
          pos = chunked.execute(data, pos, len, this);
          if (chunked.done) {
            // A Connection line among the trailers: not reused, as llhttp reads it.
            if (chunked.connectionTrailer) this.keepAlive = false;
            this.#state = State.Done;
            this.#sink.onComplete();
          }
          break;
        }
        case State.BodyUntilClose: {
          const chunk = views.of(data, pos, len);
          pos = len;
          this.#sink.onBody(chunk);
          break;
        }
        case State.Done:
          return len - pos;
      }
    }
    return 0;
  }

  /** The server closed the connection: completes a read-until-close body, else it is an error. */
  finishAtEof(): boolean {
    if (this.#state === State.BodyUntilClose) {
      this.#state = State.Done;
      this.#sink.onComplete();
      return true;
    }
    return this.#state === State.Done;
  }

  #readHead(data: Buffer, pos: number, len: number): number {
    const partial = this.#partialHead;
    if (partial === null) {
      // A replica answers an endpoint with the same head again and again (the same Server,
      // Content-Type and length; Date changes once a second), and a head equal byte for byte
      // to the last one parses the same: comparing words costs a fraction of parsing and
      // classifying its lines, and lets the proxy reuse the client head it built from them.
      if (pos === 0 && this.#memoLength !== 0 && this.#memoLength <= len && this.#sameAsMemo(data)) return this.#deliverMemo(data);
      // The usual first case: the whole head in one read, parsed in the pass that finds its end.
      const end = this.#parseHead(data, pos, len);
      if (end !== -1) return end;
      this.#keepPartialHead(data, pos, len);
      return len;
    }
    // A head split across reads is parsed once its end has arrived. The search starts a
    // little before the join, so a CRLFCRLF split across reads is found, and no byte is
    // scanned again for every read of a head that trickles in.
    const prevLen = partial.length;
    const buf = Buffer.concat([partial, data.subarray(pos, len)]);
    this.#partialHead = null;
    const end = buf.indexOf(CRLFCRLF, Math.max(0, prevLen - 3)) === -1 ? -1 : this.#parseHead(buf, 0, buf.length);
    if (end === -1) {
      this.#keepPartialHead(buf, 0, buf.length);
      return len;
    }
    return end - prevLen + pos;
  }

  #keepPartialHead(buf: Buffer, start: number, end: number): void {
    if (end - start > MAX_HEAD_BYTES) throw new ParseError('response head too large');
    this.#partialHead = Buffer.from(buf.subarray(start, end));
  }

  /**
   * Parses the head starting at `buf[start]` and delivers it; returns the index past its
   * final CRLFCRLF, or -1 when `buf[start, len)` holds only part of it.
   */
  #parseHead(buf: Buffer, start: number, len: number): number {
    const lines = this.#lines;
    lines.reset(buf);
    this.#memoLength = 0; // the lines no longer describe the remembered head
    try {
      return this.#parseLines(buf, wordsOf(buf), start, len, lines);
    } finally {
      lines.release();
    }
  }

  /** `data` starts with the remembered head: the words of the shared read buffer are compared, then the last bytes. */
  #sameAsMemo(data: Buffer): boolean {
    const words = wordsOf(data);
    if (words === null) return false;
    const memoWords = this.#memoWords;
    const n = this.#memoLength;
    const whole = n >>> 2;
    for (let k = 0; k < whole; k++) if (words[k] !== memoWords[k]) return false;
    const memo = this.#memo;
    for (let i = whole << 2; i < n; i++) if (data[i] !== memo[i]) return false;
    return true;
  }

  #deliverMemo(data: Buffer): number {
    const lines = this.#lines;
    lines.repeat(data);
    try {
      this.#deliverHead(this.#memoStatus, lines, this.#memoContentLength, this.#memoChunked, this.#memoKeepAlive);
    } finally {
      lines.release();
    }
    return this.#memoLength;
  }

  #parseLines(buf: Buffer, words: Int32Array | null, start: number, len: number, lines: HeaderLines): number {
    // "HTTP/1.1 200 OK"
    let lineStart = lineAfter(buf, words, start, len);
    if (lineStart === -1) return -1;
    // The version, one space, three digits, then a space or the line's end.
    const statusLineLength = lineStart - 2 - start;
    if (statusLineLength < 12 || !isStatusPrefix(buf, start) || (statusLineLength > 12 && buf[start + 12] !== 0x20)) throw new ParseError('invalid status line');
    const d0 = buf[start + 9]! - 48;
    const d1 = buf[start + 10]! - 48;
    const d2 = buf[start + 11]! - 48;
    if (!(d0 >= 1 && d0 <= 9 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9)) throw new ParseError('invalid status code');
    const status = d0 * 100 + d1 * 10 + d2;
    let keepAlive = buf[start + 7] !== 48; // HTTP/1.0 closes unless told otherwise
    let contentLength = -1;
    let chunked = false;
    let transferEncoding = false;
    let close = false;
    for (;;) {
      if (lineStart >= len) return -1;
      const first = buf[lineStart]!;
      if (first === 0x0d) {
        // The empty line: the head ends here.
        if (lineStart + 1 >= len) return -1;
        if (buf[lineStart + 1] !== 0x0a) throw new ParseError('bare CR or LF in a header line');
        lineStart += 2;
        break;
      }
      // Lines end at CRLF; a bare CR or LF inside a line would let the upstream inject lines
      // into the head the gateway writes to its client (response splitting). The name is a
      // token: no whitespace before the colon, no folded line (obs-fold), as llhttp has it.
      let colon = lineStart;
      // Four bytes a step: one branch per step, as cheap as the word scan this replaced.
      while (colon + 4 <= len && (TCHAR[buf[colon]!]! & TCHAR[buf[colon + 1]!]! & TCHAR[buf[colon + 2]!]! & TCHAR[buf[colon + 3]!]!) === 1) colon += 4;
      while (colon < len && TCHAR[buf[colon]!] === 1) colon++;
      if (colon === len) return -1;
      if (buf[colon] !== 0x3a || colon === lineStart) throw new ParseError(headerNameError(buf[colon]!, colon === lineStart));
      const next = lineAfter(buf, words, colon, len);
      if (next === -1) return -1;
      let vs = colon + 1;
      let ve = next - 2;
      while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs++;
      while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
      const kind = kindOfNameBytes(buf, lineStart, colon);
      switch (kind) {
        case HeaderKind.ContentLength: {
          const n = decimalValue(buf, vs, ve);
          if (n < 0 || hasTab(buf, ve, next - 2)) throw new ParseError('invalid content-length');
          if (contentLength !== -1 && contentLength !== n) throw new ParseError('conflicting content-length');
          contentLength = n;
          break;
        }
        case HeaderKind.TransferEncoding:
          // llhttp does not take "chunked<TAB>" as chunked: refused rather than read either way.
          if (hasTab(buf, ve, next - 2)) throw new ParseError('invalid transfer-encoding');
          transferEncoding = true;
          if (ve > vs) chunked = endsWithChunked(buf, vs, ve); // an empty value changes nothing
          break;
        case HeaderKind.Connection:
          // The options are tokens ("closed" is not close), and close wins over keep-alive
          // whichever line comes first, as llhttp has it.
          if (ve - vs === 10 && bytesStartWithName(buf, vs, ve, KEEP_ALIVE)) keepAlive = !close;
          else {
            const v = buf.toString('latin1', vs, ve).toLowerCase();
            const options = connectionOptions(v);
            if ((options & CLOSE) !== 0) {
              close = true;
              keepAlive = false;
            } else if ((options & KEEP_ALIVE_OPTION) !== 0) keepAlive = !close;
            const tokens = connectionTokens(v);
            if (tokens !== null) lines.hop = lines.hop === null ? tokens : lines.hop.concat(tokens);
          }
          break;
      }
      lines.add(lineStart, colon, vs, ve, kind);
      lineStart = next;
    }
    if (lineStart - start > MAX_HEAD_BYTES) throw new ParseError('response head too large');
    if (transferEncoding && contentLength !== -1) {
      // Both framings: a smuggling pattern (RFC 9112 6.3). Chunked wins, and the connection
      // is not reused after it; Content-Length with any other coding is refused.
      if (!chunked || status < 200) throw new ParseError('content-length with transfer-encoding');
      keepAlive = false;
    }
    if (status < 200) {
      // 1xx (100 Continue, 103 Early Hints): informational, the real head follows.
      if (status === 101) throw new ParseError('protocol upgrade is not supported');
      // Unless it closes the connection (as an HTTP/1.0 one does by default): then nothing may follow.
      if (!keepAlive) throw new ParseError('informational response closes the connection');
      return lineStart;
    }
    if (chunked) contentLength = -1; // RFC 9112 6.3: Transfer-Encoding wins over Content-Length.
    if (start === 0 && words !== null && lineStart <= MEMO_MAX_BYTES && lines.hop === null) {
      const whole = lineStart >>> 2;
      const memoWords = this.#memoWords;
      for (let k = 0; k < whole; k++) memoWords[k] = words[k]!;
      const memo = this.#memo;
      for (let i = whole << 2; i < lineStart; i++) memo[i] = buf[i]!;
      this.#memoLength = lineStart;
      this.#memoStatus = status;
      this.#memoContentLength = contentLength;
      this.#memoChunked = chunked;
      this.#memoKeepAlive = keepAlive;
    }
    this.#deliverHead(status, lines, contentLength, chunked, keepAlive);
    return lineStart;
  }

  /** A final head has been read: sets up the body's framing and hands the head to the sink. */
  #deliverHead(status: number, lines: HeaderLines, contentLength: number, chunked: boolean, keepAlive: boolean): void {
    this.headReceived = true;
    this.keepAlive = keepAlive;
    const noBody = this.#noBody || status === 204 || status === 304;
    if (noBody) {
      this.#state = State.Done;
    } else if (chunked) {
      this.#state = State.Chunked;
      this.#chunked.reset(MAX_HEAD_BYTES);
    } else if (contentLength >= 0) {
      this.#remaining = contentLength;
      this.#state = contentLength === 0 ? State.Done : State.BodyLength;
    } else {
      this.#state = State.BodyUntilClose;
      this.keepAlive = false;
    }
    // For a response without a body (HEAD, 204, 304) this is the length the server
    // announced, -1 if none: a HEAD answer must not claim an empty resource.
    this.#sink.onHead(status, lines, contentLength, chunked);
    if (this.#state === State.Done) this.#sink.onComplete();
  }
}

/**
 * The start of the line after the one holding `from`: the index past its CRLF, or -1 when
 * `buf[from, len)` does not reach it. A CR without LF, or an LF without CR, is an error, and
 * so is any other control byte but HTAB (NUL, DEL...: RFC 9110 5.5, and llhttp refuses them).
 */
function lineAfter(buf: Buffer, words: Int32Array | null, from: number, len: number): number {
  for (let i = from; ; i++) {
    i = control(buf, words, i, len);
    if (i === len) return -1;
    const c = buf[i]!;
    if (c === 0x0d) {
      if (i + 1 >= len) return -1;
      if (buf[i + 1] !== 0x0a) throw new ParseError('bare CR or LF in a header line');
      return i + 2;
    }
    if (c === 0x0a) throw new ParseError('bare CR or LF in a header line');
    if (c !== 0x09) throw new ParseError('control character in a header line');
  }
}

const CLOSE = 1;
const KEEP_ALIVE_OPTION = 2;

/** Which of close and keep-alive the comma-separated options in `v` (lower case) hold. */
function connectionOptions(v: string): number {
  let options = 0;
  for (let from = 0; from <= v.length; ) {
    let to = v.indexOf(',', from);
    if (to === -1) to = v.length;
    let s = from;
    let e = to;
    while (s < e && (v.charCodeAt(s) === 0x20 || v.charCodeAt(s) === 0x09)) s++;
    while (e > s && (v.charCodeAt(e - 1) === 0x20 || v.charCodeAt(e - 1) === 0x09)) e--;
    if (e - s === 5 && v.startsWith('close', s)) options |= CLOSE;
    else if (e - s === 10 && v.startsWith('keep-alive', s)) options |= KEEP_ALIVE_OPTION;
    from = to + 1;
  }
  return options;
}

function headerNameError(c: number, first: boolean): string {
  if (c === 0x0a) return 'bare CR or LF in a header line';
  if (first && (c === 0x20 || c === 0x09)) return 'folded header line (obs-fold)';
  return c === 0x0d || c === 0x3a ? 'invalid header line' : 'invalid header name';
}

/** A HTAB in `buf[from, to)`. */
function hasTab(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] === 0x09) return true;
  return false;
}

/** The last transfer coding in `buf[vs, ve)` is chunked: the value ends with the token "chunked", after a comma or nothing but whitespace. */
function endsWithChunked(buf: Buffer, vs: number, ve: number): boolean {
  if (ve - vs < 7 || !bytesStartWithName(buf, ve - 7, ve, CHUNKED)) return false;
  let i = ve - 8;
  while (i >= vs && (buf[i] === 0x20 || buf[i] === 0x09)) i--;
  return i < vs || buf[i] === 0x2c;
}

// Header values are scanned four at a time where the buffer allows it: a header line is
// mostly bytes the parser only steps over, and a word test finds the next byte that
// matters (CR, LF, HTAB, the other controls, DEL) in a quarter of the loop iterations. The
// test is the classic "has a byte less than n" bit trick (w - LOW) joined with its mirror
// "has a byte above 0x7e" (w + ONES): yes for every word holding such a byte, and for no
// word of printable ASCII; bytes above 0x7f (obs-text, rare) may answer yes too, and the
// byte loop then finds which byte it was, if any.
const LOW = 0x20202020; // any byte below 0x20: CR, LF, HTAB and the other controls
const HIGH_BITS = 0x80808080 | 0;
const ONES = 0x01010101;

let wordsBuf: Buffer | null = null;
let wordsView: Int32Array | null = null;

/** A 32-bit view of `buf` (word k = bytes 4k..4k+3), when its offset allows one; cached for the shared read buffer. */
function wordsOf(buf: Buffer): Int32Array | null {
  if (buf === wordsBuf) return wordsView;
  if (buf.byteOffset % 4 !== 0 || buf.length < 4) return null;
  wordsBuf = buf;
  wordsView = new Int32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  return wordsView;
}

/** The index of the first control byte (below 0x20, or DEL) in `buf[from, len)`, or `len`. */
function control(buf: Buffer, words: Int32Array | null, from: number, len: number): number {
  let i = from;
  if (words !== null) {
    while ((i & 3) !== 0 && i < len) {
      const c = buf[i]!;
      if (c < 0x20 || c === 0x7f) return i;
      i++;
    }
    while (i + 4 <= len) {
      const w = words[i >>> 2]!;
      if (((w - LOW) | (w + ONES)) & HIGH_BITS) break;
      i += 4;
    }
  }
  for (; i < len; i++) {
    const c = buf[i]!;
    if (c < 0x20 || c === 0x7f) return i;
  }
  return len;
}

/** `buf[start, ...)` is "HTTP/1.0 " or "HTTP/1.1 " (exact case, as RFC 9112 requires). */
function isStatusPrefix(buf: Buffer, start: number): boolean {
  const minor = buf[start + 7];
  return buf[start] === 0x48 && buf[start + 1] === 0x54 && buf[start + 2] === 0x54 && buf[start + 3] === 0x50 &&
    buf[start + 4] === 0x2f && buf[start + 5] === 0x31 && buf[start + 6] === 0x2e && (minor === 0x30 || minor === 0x31) &&
    buf[start + 8] === 0x20;
}

/** The non-negative decimal in `buf[start, end)`, or -1 if it is not one (empty, a sign, other characters, unsafe). */
function decimalValue(buf: Buffer, start: number, end: number): number {
  if (start === end || end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

