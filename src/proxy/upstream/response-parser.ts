// Incremental HTTP/1.1 response parser. It hands body bytes out as views of the socket's
// buffers (never copies), decodes chunked framing, and reports the framing facts the
// proxy needs (length, keep-alive). One parser lives per upstream connection and is
// reset per response, so it allocates nothing per response: header lines are offsets
// into the read buffer (HeaderLines).

import { Buffer } from 'node:buffer';
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
  ChunkSize,
  ChunkExt,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  Trailer,
  BodyUntilClose,
  Done,
}

export class ParseError extends Error {
  readonly code = 'SLUICE_ERR_UPSTREAM_PROTOCOL';
}

export class ResponseParser {
  #sink: ResponseSink;
  #state = State.Head;
  #partialHead: Buffer | null = null;
  #remaining = 0;
  #sawSizeDigit = false;
  #trailerLineLength = 0;
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
          const chunk = pos === 0 && n === data.length ? data : viewOf(data, pos, pos + n);
          pos += n;
          if (this.#remaining === 0) this.#state = State.Done;
          this.#sink.onBody(chunk);
          if (this.#state === State.Done) this.#sink.onComplete();
          break;
        }
        case State.ChunkSize: {
          const c = data[pos++]!;
          const digit = hexValue(c);
          if (digit >= 0) {
            this.#remaining = this.#remaining * 16 + digit;
            if (this.#remaining > Number.MAX_SAFE_INTEGER / 16) throw new ParseError('chunk size too large');
            this.#sawSizeDigit = true;
          } else if (!this.#sawSizeDigit) {
            throw new ParseError('invalid chunk size');
          } else if (c === 0x0d) {
            this.#state = State.ChunkSizeLf;
          } else if (c === 0x3b || c === 0x20 || c === 0x09) {
            this.#state = State.ChunkExt;
          } else {
            throw new ParseError('invalid chunk size');
          }
          break;
        }
        case State.ChunkExt: {
          const cr = data.indexOf(0x0d, pos);
          if (cr === -1 || cr >= len) {
            pos = len;
          } else {
            pos = cr + 1;
            this.#state = State.ChunkSizeLf;
          }
          break;
        }
        case State.ChunkSizeLf:
          if (data[pos++] !== 0x0a) throw new ParseError('invalid chunk size line');
          if (this.#remaining === 0) {
            this.#state = State.Trailer;
            this.#trailerLineLength = 0;
          } else {
            this.#state = State.ChunkData;
          }
          break;
        case State.ChunkData: {
          const n = Math.min(this.#remaining, len - pos);
          this.#remaining -= n;
          const chunk = viewOf(data, pos, pos + n);
          pos += n;
          if (this.#remaining === 0) this.#state = State.ChunkDataCr;
          this.#sink.onBody(chunk);
          break;
        }
        case State.ChunkDataCr:
          if (data[pos++] !== 0x0d) throw new ParseError('missing CRLF after chunk');
          this.#state = State.ChunkDataLf;
          break;
        case State.ChunkDataLf:
          if (data[pos++] !== 0x0a) throw new ParseError('missing CRLF after chunk');
          this.#state = State.ChunkSize;
          this.#remaining = 0;
          this.#sawSizeDigit = false;
          break;
        case State.Trailer: {
          // Trailers are dropped; an empty line ends the message.
          const c = data[pos++]!;
          if (c === 0x0a) {
            if (this.#trailerLineLength === 0) {
              this.#state = State.Done;
              this.#sink.onComplete();
            }
            this.#trailerLineLength = 0;
          } else if (c !== 0x0d) {
            this.#trailerLineLength++;
          }
          break;
        }
        case State.BodyUntilClose: {
          const chunk = pos === 0 && len === data.length ? data : viewOf(data, pos, len);
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
    if (lineStart - 2 - start < 12 || !isStatusPrefix(buf, start)) throw new ParseError('invalid status line');
    const status = (buf[start + 9]! - 48) * 100 + (buf[start + 10]! - 48) * 10 + (buf[start + 11]! - 48);
    if (!(status >= 100 && status <= 999)) throw new ParseError('invalid status code');
    let keepAlive = buf[start + 7] !== 48; // HTTP/1.0 closes unless told otherwise
    let contentLength = -1;
    let chunked = false;
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
      // into the head the gateway writes to its client (response splitting).
      let colon = lineStart;
      for (;;) {
        colon = colonOrControl(buf, words, colon, len);
        if (colon === len) return -1;
        const c = buf[colon]!;
        if (c === 0x3a) break;
        if (c === 0x0d || c === 0x0a) throw new ParseError(c === 0x0a ? 'bare CR or LF in a header line' : 'invalid header line');
        colon++;
      }
      if (colon === lineStart) throw new ParseError('invalid header line');
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
          if (n < 0) throw new ParseError('invalid content-length');
          if (contentLength !== -1 && contentLength !== n) throw new ParseError('conflicting content-length');
          contentLength = n;
          break;
        }
        case HeaderKind.TransferEncoding:
          chunked = ve - vs >= 7 && bytesStartWithName(buf, ve - 7, ve, CHUNKED);
          break;
        case HeaderKind.Connection:
          if (ve - vs === 10 && bytesStartWithName(buf, vs, ve, KEEP_ALIVE)) keepAlive = true;
          else {
            const v = buf.toString('latin1', vs, ve).toLowerCase();
            if (v.includes('close')) keepAlive = false;
            else if (v.includes('keep-alive')) keepAlive = true;
            const tokens = connectionTokens(v);
            if (tokens !== null) lines.hop = lines.hop === null ? tokens : lines.hop.concat(tokens);
          }
          break;
      }
      lines.add(lineStart, colon, vs, ve, kind);
      lineStart = next;
    }
    if (status < 200) {
      // 1xx (100 Continue, 103 Early Hints): informational, the real head follows.
      if (status === 101) throw new ParseError('protocol upgrade is not supported');
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
      this.#state = State.ChunkSize;
      this.#remaining = 0;
      this.#sawSizeDigit = false;
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
 * `buf[from, len)` does not reach it. A CR without LF, or an LF without CR, is an error.
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
  }
}

// Header bytes are scanned four at a time where the buffer allows it: a header line is
// mostly bytes the parser only steps over, and a word test finds the next byte that
// matters (CR, LF, other controls, ':') in a quarter of the loop iterations. The tests
// are the classic "has a byte less than n" and "has a zero byte" bit tricks, exact as
// yes/no answers; the byte loop then finds which byte it was.
const LOW = 0x0e0e0e0e; // any byte below 0x0e: CR, LF, TAB and the other controls
const COLONS = 0x3a3a3a3a;
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

// Body chunks are views of the buffer fed in, which is the thread's one read buffer read
// after read; a workload's bodies sit at the same few offsets of it, and Buffer#subarray
// costs ~120 ns. So views of that buffer are kept by start offset and handed out again when
// start and length match. Sharing a view is safe: a chunk is only read, and whoever keeps
// one copies it (the next read overwrites the bytes anyway).
const VIEW_SLOTS = 1024; // a power of two
let viewsBuf: Buffer | null = null;
const views: Array<Buffer | undefined> = new Array<Buffer | undefined>(VIEW_SLOTS).fill(undefined);

/** `buf[start, end)` as a Buffer view. */
function viewOf(buf: Buffer, start: number, end: number): Buffer {
  if (buf !== viewsBuf) {
    viewsBuf = buf;
    views.fill(undefined);
  }
  const slot = start & (VIEW_SLOTS - 1);
  const cached = views[slot];
  if (cached !== undefined && cached.length === end - start && cached.byteOffset === buf.byteOffset + start) return cached;
  return (views[slot] = buf.subarray(start, end));
}

/** The index of the first byte below 0x0e in `buf[from, len)`, or `len`. */
function control(buf: Buffer, words: Int32Array | null, from: number, len: number): number {
  let i = from;
  if (words !== null) {
    while ((i & 3) !== 0 && i < len) {
      if (buf[i]! < 0x0e) return i;
      i++;
    }
    while (i + 4 <= len) {
      const w = words[i >>> 2]!;
      if (((w - LOW) & ~w & HIGH_BITS) !== 0) break;
      i += 4;
    }
  }
  for (; i < len; i++) if (buf[i]! < 0x0e) return i;
  return len;
}

/** The index of the first ':' or byte below 0x0e in `buf[from, len)`, or `len`. */
function colonOrControl(buf: Buffer, words: Int32Array | null, from: number, len: number): number {
  let i = from;
  if (words !== null) {
    while ((i & 3) !== 0 && i < len) {
      const c = buf[i]!;
      if (c < 0x0e || c === 0x3a) return i;
      i++;
    }
    while (i + 4 <= len) {
      const w = words[i >>> 2]!;
      const x = w ^ COLONS;
      if ((((w - LOW) & ~w) | ((x - ONES) & ~x)) & HIGH_BITS) break;
      i += 4;
    }
  }
  for (; i < len; i++) {
    const c = buf[i]!;
    if (c < 0x0e || c === 0x3a) return i;
  }
  return len;
}

/** `buf[start, ...)` is "HTTP/1." (exact case, as RFC 9112 requires). */
function isStatusPrefix(buf: Buffer, start: number): boolean {
  return buf[start] === 0x48 && buf[start + 1] === 0x54 && buf[start + 2] === 0x54 && buf[start + 3] === 0x50 &&
    buf[start + 4] === 0x2f && buf[start + 5] === 0x31 && buf[start + 6] === 0x2e;
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

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}
