// Incremental HTTP/1.1 request parser (RFC 9112) for the client-facing front end on Node's
// TCP handles. One parser lives per client connection and is reset per request; the head
// object and its name/value arrays are reused, so a request costs its strings (one latin1
// decode of the head, sliced) and the body views, nothing more.
//
// A head is read in two passes: #scan checks its bytes (four at a time where it can) and
// notes where the parts are, finding its end on the way (one pass over the bytes: cheaper
// than a Buffer#indexOf of CRLFCRLF first, whose call alone costs what half the scan does);
// #build then decodes the head to one latin1 string and slices the names from
// it. A head split across calls is copied (bounded by maxHeadBytes) and its scan resumes at
// the line it stopped in. Body bytes are handed out as views of the buffers given to
// execute(), never copied.
//
// Strict where the RFCs let a server be: exactly one SP in the request line, HTTP/1.0 and
// 1.1 only (505 for other versions), target bytes VCHAR without '#', lines ended by CRLF
// only, no obs-fold, no whitespace before a colon, no control byte but HTAB in a value,
// Content-Length 1*DIGIT (identical repeats are one), Transfer-Encoding chunked last and
// once (other codings 501), never with Content-Length or in HTTP/1.0, one Host at most,
// CONNECT refused (501: no tunnels). LOOSER than RFC 9112 3.2: a missing Host is accepted
// (the router answers such a request by its path; an HTTP/1.1 server MUST answer 400).
// test/proxy/request-parser-differential.test.ts lists how this differs from llhttp.

import { Buffer } from 'node:buffer';
import { TCHAR, ViewCache } from '../http1/bytes.js';
import { ChunkedBody, type ChunkedBodySink } from '../http1/chunked-body.js';

export interface RequestSink {
  /** A request head was read; `head` is the parser's own object, valid until the next reset(). */
  onRequestHead(head: RequestHead): void;
  /** A piece of the body, chunked framing removed: a view of the bytes given to execute(), valid during this call only. Return false to make execute() return right after this piece (backpressure). */
  onRequestBody(chunk: Buffer): boolean;
  /** The request is complete (right after onRequestHead when it has no body; right after the last piece of a Content-Length body, even when onRequestBody returned false for it). */
  onRequestComplete(): void;
}

export class RequestHead {
  /** As sent (a token, case kept, e.g. 'POST'). */
  method = '';
  /** The target's path, before any '?': '/a/b' (origin-form), '*' (OPTIONS *), or the path of an absolute-form target ('/' when it has none). */
  url = '';
  /** After the first '?', without it; '' when there is none. */
  query = '';
  /** The authority of an absolute-form target ('h:1' for 'http://h:1/p'), else ''. */
  authority = '';
  /** HTTP/1.0 -> 0, HTTP/1.1 -> 1. */
  versionMinor = 1;
  /** Header names, lower-cased, in order; the arrays are reused across requests: only [0, count) is valid. */
  readonly names: string[] = [];
  count = 0;
  /** The head as received, latin1-decoded. */
  text = '';
  /**
   * Per header line k at 4k..4k+3, offsets into text as the parser's scan found them: where
   * the line starts, where its name ends (negative when the name has an upper-case letter),
   * where its value starts and ends (SP/HTAB trimmed).
   */
  readonly lines: Int32Array;
  /** Where the empty line that ends the head starts in text. */
  end = 0;

  constructor(maxHeaders: number) {
    this.lines = new Int32Array(4 * maxHeaders);
  }

  /**
   * Header k's value, leading and trailing SP/HTAB removed, latin1-decoded. Sliced when
   * asked for: most values are forwarded as part of their line and never read alone.
   */
  value(k: number): string {
    return this.text.slice(this.lines[4 * k + 2]!, this.lines[4 * k + 3]!);
  }

  /** Where header line k (`Name: value\r\n` as sent) starts in text; k = count: where the head's empty line does. */
  lineStart(k: number): number {
    return k < this.count ? this.lines[4 * k]! : this.end;
  }
  /** When Content-Length frames the body; -1 otherwise. */
  contentLength = -1;
  chunked = false;
  /** HTTP/1.1: unless Connection lists "close"; HTTP/1.0: only if Connection lists "keep-alive" (and not "close"). */
  keepAlive = true;
  /** HTTP/1.1 with Expect: 100-continue (case-insensitive). */
  expectContinue = false;
}

export type RequestParseStatus = 400 | 408 | 413 | 431 | 501 | 505;

export class RequestParseError extends Error {
  /** `message`: plain words, safe to show a client (never the request's bytes). */
  constructor(
    readonly status: RequestParseStatus,
    message: string,
  ) {
    super(message);
    this.name = 'RequestParseError';
  }
}

export interface RequestParserOptions {
  /** Request line plus header lines (and leading empty lines, and trailer lines), whole bytes with their CRLFs. Default 16384. */
  maxHeadBytes?: number;
  /** Header lines. Default 100. */
  maxHeaders?: number;
}

// The request line and header lines together (431 above): Node's http default; nginx
// refuses a header line over 8 KiB.
const DEFAULT_MAX_HEAD_BYTES = 16 * 1024;
const DEFAULT_MAX_HEADERS = 100;
// RFC 9110 8.6: 1*DIGIT; 15 digits keep the value an exact double (the response parser's bound).
const MAX_LENGTH_DIGITS = 15;
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;

/** Field names (tokens, RFC 9110 5.6.2): 1 for a token byte, 3 for an upper-case letter (lowered later). */
const NAME = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME[c.charCodeAt(0)] = 1;
for (let c = 0x41; c <= 0x5a; c++) NAME[c] = 3;
/** Field value bytes (RFC 9110 5.5): HTAB, SP, VCHAR, obs-text. */
const VALUE = new Uint8Array(256);
VALUE[HTAB] = 1;
for (let c = 0x20; c < 0x100; c++) if (c !== 0x7f) VALUE[c] = 1;
/** Request-target bytes: 1 for VCHAR but '?' (2) and '#' (0: no fragment in a request target, RFC 9112 3.2). */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c < 0x7f; c++) TARGET[c] = 1;
TARGET[0x3f] = 2;
TARGET[0x23] = 0;

const enum State {
  Head,
  /** A CR of an empty line before the request line was read; its LF must follow. */
  LeadLf,
  BodyLength,
  Chunked,
  Done,
}


const bad = (message: string): RequestParseError => new RequestParseError(400, message);

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

const views = new ViewCache();

export class RequestParser implements ChunkedBodySink {
  readonly #sink: RequestSink;
  readonly #head: RequestHead;
  readonly #maxHeadBytes: number;
  readonly #maxHeaders: number;
  #state = State.Head;
  /** Bytes of the current request's head section seen so far: empty lines before it, kept head bytes, trailer bytes. */
  #headBytes = 0;
  /** A byte of the request line has been consumed. */
  #started = false;
  /** A head split across calls: its bytes so far, in a buffer reused across requests. */
  #scratch: Buffer | null = null;
  #scratchLength = 0;
  #remaining = 0;
  readonly #chunked = new ChunkedBody(views, (message, tooLarge) => (tooLarge ? new RequestParseError(431, message) : bad(message)));
  // What #scan found, for #build: where the method ends, the target's first '?' (or -1) and
  // end, the minor version, and the header lines' offsets (into the head's `lines`).
  #methodEnd = 0;
  #query = -1;
  #targetEnd = 0;
  #minor = 1;
  #count = 0;
  /** Where a split head's scan resumes: the start of its first unscanned header line, from the head's start; 0: the request line. */
  #resumeAt = 0;

  constructor(sink: RequestSink, options: RequestParserOptions = {}) {
    const maxHeadBytes = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
    const maxHeaders = options.maxHeaders ?? DEFAULT_MAX_HEADERS;
    if (!Number.isSafeInteger(maxHeadBytes) || maxHeadBytes < 16) throw new RangeError('maxHeadBytes must be an integer of at least 16');
    if (!Number.isSafeInteger(maxHeaders) || maxHeaders < 0) throw new RangeError('maxHeaders must be a non-negative integer');
    this.#sink = sink;
    this.#maxHeadBytes = maxHeadBytes;
    this.#maxHeaders = maxHeaders;
    this.#head = new RequestHead(maxHeaders);
  }

  reset(): void {
    this.#state = State.Head;
    this.#headBytes = 0;
    this.#started = false;
    this.#scratchLength = 0;
    this.#resumeAt = 0;
  }

  get done(): boolean {
    return this.#state === State.Done;
  }

  /** ChunkedBodySink: a piece of a chunked body goes to the sink, which may stop the parse after it. */
  onChunkData(chunk: Buffer): boolean {
    return this.#sink.onRequestBody(chunk);
  }

  /** Part of a request head is here, kept for the rest (a head split across reads). */
  get headPending(): boolean {
    return this.#scratchLength > 0 && this.#state === State.Head;
  }

  /** No byte of the current request has been consumed since reset() (leading empty lines do not count). */
  get idle(): boolean {
    return !this.#started;
  }

  /**
   * Parses data[start, end). Returns where it stopped: `end`; or right after a complete
   * request (`done`; the caller resets before feeding the bytes that follow); or right after
   * a body piece for which the sink returned false. Throws RequestParseError on malformed input.
   */
  execute(data: Buffer, start: number, end: number): number {
    let pos = start;
    while (pos < end) {
      switch (this.#state) {
        case State.Head:
          pos = this.#readHead(data, pos, end);
          break;
        case State.LeadLf:
          if (data[pos++] !== LF) throw bad('bare CR before the request line');
          if (++this.#headBytes > this.#maxHeadBytes) throw new RequestParseError(431, 'request head too large');
          this.#state = State.Head;
          break;
        case State.BodyLength: {
          const n = Math.min(this.#remaining, end - pos);
          this.#remaining -= n;
          const chunk = views.of(data, pos, pos + n);
          pos += n;
          if (this.#remaining === 0) this.#state = State.Done;
          const more = this.#sink.onRequestBody(chunk);
          if (this.#state === State.Done) {
            this.#sink.onRequestComplete();
            return pos;
          }
          if (!more) return pos;
          break;
        }
        case State.Chunked:
          pos = this.#chunked.execute(data, pos, end, this);
          if (this.#chunked.done) {
            this.#state = State.Done;
            this.#sink.onRequestComplete();
          } else if (pos < end) {
            // The sink refused a piece: the rest waits for the next call.
            return pos;
          }
          break;
        case State.Done:
          return pos;
      }
      if ((this.#state as State) === State.Done) return pos;
    }
    return pos;
  }

  #readHead(data: Buffer, pos: number, end: number): number {
    const kept = this.#scratchLength;
    if (kept === 0) {
      // Empty lines before the request line are ignored (RFC 9112 2.2), CRLF only, and counted.
      if (!this.#started) {
        const from = pos;
        while (pos < end && data[pos] === CR) {
          if (pos + 1 === end) {
            pos++;
            this.#state = State.LeadLf;
            break;
          }
          if (data[pos + 1] !== LF) throw bad('bare CR before the request line');
          pos += 2;
        }
        this.#headBytes += pos - from;
        if (this.#headBytes > this.#maxHeadBytes) throw new RequestParseError(431, 'request head too large');
        if (pos === end || this.#state === State.LeadLf) return pos;
        if (data[pos] === LF) throw bad('bare LF before the request line');
        this.#started = true;
      }
      // The usual case: the whole head in one read, found and checked in one pass (which also
      // refuses bad bytes at once when only part of the head is here).
      const limit = this.#maxHeadBytes - this.#headBytes;
      const headEnd = this.#scan(data, pos, Math.min(end, pos + limit));
      if (headEnd !== -1) {
        this.#headBytes += headEnd - pos;
        this.#build(data, pos, headEnd);
        return this.#afterHead(headEnd);
      }
      if (end - pos > limit) throw new RequestParseError(431, 'request head too large');
      this.#keep(data, pos, end);
      return end;
    }
    // A head split across calls: the new bytes are appended (no more than the head may still
    // take), and the scan goes on from the start of the line it stopped in, when the new
    // bytes end a line: a line is scanned at most twice however the head trickles in.
    const limit = this.#maxHeadBytes - this.#headBytes - kept;
    const n = Math.min(end - pos, limit + 1);
    this.#keep(data, pos, pos + n);
    const scratch = this.#scratch!;
    const total = this.#scratchLength;
    // Whether the new bytes end a line: a short piece is looked through here, a longer one
    // with indexOf (which may look past it, at most to the buffer's end, once per piece).
    let lineEnded = false;
    if (n <= 64) {
      for (let k = pos; k < pos + n; k++) {
        if (data[k] === LF) {
          lineEnded = true;
          break;
        }
      }
    } else {
      const lf = data.indexOf(LF, pos);
      lineEnded = lf !== -1 && lf < pos + n;
    }
    if (lineEnded) {
      const headEnd = this.#scan(scratch, 0, Math.min(total, this.#maxHeadBytes - this.#headBytes));
      if (headEnd !== -1) {
        this.#headBytes += headEnd;
        this.#build(scratch, 0, headEnd);
        this.#scratchLength = 0;
        return this.#afterHead(pos + headEnd - kept);
      }
    }
    if (n > limit) throw new RequestParseError(431, 'request head too large');
    return pos + n;
  }

  /** Appends data[from, to) to the kept head bytes. */
  #keep(data: Buffer, from: number, to: number): void {
    const length = this.#scratchLength + to - from;
    let scratch = this.#scratch;
    if (scratch === null || scratch.length < length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(length, 2 * (scratch?.length ?? 0), 1024), this.#maxHeadBytes + 1));
      if (scratch !== null) scratch.copy(grown, 0, 0, this.#scratchLength);
      this.#scratch = scratch = grown;
    }
    data.copy(scratch, this.#scratchLength, from, to);
    this.#scratchLength = length;
  }

  /** The head has been read and delivered, and ends at `pos`: sets up the body. */
  #afterHead(pos: number): number {
    const head = this.#head;
    if (head.chunked) {
      this.#state = State.Chunked;
      // Trailers count with the head against maxHeadBytes.
      this.#chunked.reset(this.#maxHeadBytes - this.#headBytes);
    } else if (head.contentLength > 0) {
      this.#state = State.BodyLength;
      this.#remaining = head.contentLength;
    } else {
      this.#state = State.Done;
    }
    this.#sink.onRequestHead(head);
    if (this.#state === State.Done) this.#sink.onRequestComplete();
    return pos;
  }

  /**
   * The first pass over a head starting at buf[s]: checks the request line's and the header
   * lines' bytes, and notes where their parts are. Returns the index right after the head's
   * final CRLF, or -1 when buf[s, end) holds only part of it (a byte it does hold that cannot
   * be part of a valid head throws at once).
   */
  #scan(buf: Buffer, s: number, end: number): number {
    const lines = this.#head.lines;
    const maxHeaders = this.#maxHeaders;
    const view = viewOfBytes(buf);
    const base = viewBase;
    let count = this.#count;
    let p = s + this.#resumeAt;
    if (this.#resumeAt === 0) {
      count = 0;
      p = this.#scanRequestLine(buf, s, end);
      if (p === -1) return -1;
    }

    // Header lines: name ":" OWS value OWS CRLF, until an empty line.
    for (;;) {
      if (p >= end) break;
      if (buf[p] === CR) {
        if (p + 1 >= end) break;
        if (buf[p + 1] !== LF) throw bad('bare CR or LF in the head');
        this.#count = count;
        this.#resumeAt = 0;
        return p + 2;
      }
      // The name: four bytes a step while they are letters and '-' (most names), then byte
      // by byte through the token table; both note an upper-case letter (bit 2 of upper).
      let n = p;
      let upper = 0;
      while (n + 4 <= end) {
        const w = view.getInt32(base + n, true);
        const lower = w | CASE_BITS;
        const letters = (lower + TO_A) & ~(lower + PAST_Z);
        const dash = w ^ DASHES;
        if (((w & HIGH_BITS) | (~(letters | ~(((dash & LOW_7) + LOW_7) | dash)) & HIGH_BITS)) !== 0) break;
        if ((letters & ~(w << 2) & HIGH_BITS) !== 0) upper = 2;
        n += 4;
      }
      for (; n < end; n++) {
        const k = NAME[buf[n]!]!;
        if (k === 0) break;
        upper |= k;
      }
      if (n === end) break;
      if (buf[n] !== 0x3a || n === p) throw bad(nameError(buf[n]!, n === p));
      // The value: printable ASCII four bytes a step, then (and for HTAB and obs-text) byte by byte.
      let j = n + 1;
      while (j + 4 <= end) {
        const w = view.getInt32(base + j, true);
        if ((((w - LOW) | (w + ONES)) & HIGH_BITS) !== 0) break;
        j += 4;
      }
      while (j < end && VALUE[buf[j]!] === 1) j++;
      if (j === end) break;
      if (buf[j] !== CR) throw bad(buf[j] === LF ? 'bare CR or LF in a header line' : 'control character in a header value');
      if (j + 1 === end) break;
      if (buf[j + 1] !== LF) throw bad('bare CR or LF in a header line');
      if (count === maxHeaders) throw new RequestParseError(431, 'too many header lines');
      let vs = n + 1;
      let ve = j;
      while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
      while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
      // Offsets from the head's start (a split head moves to the kept bytes); a negative
      // name end: the name has an upper-case letter.
      const at = count << 2;
      lines[at] = p - s;
      lines[at + 1] = (upper & 2) === 0 ? n - s : s - n;
      lines[at + 2] = vs - s;
      lines[at + 3] = ve - s;
      count++;
      p = j + 2;
    }
    // Only part of the head is here: the scan resumes at the start of the line it stopped in.
    this.#resumeAt = p - s;
    this.#count = count;
    return -1;
  }

  /** Checks the request line at buf[s, end) and notes its parts; returns the index after its CRLF, or -1 when it is not all here. */
  #scanRequestLine(buf: Buffer, s: number, end: number): number {
    // method SP request-target SP HTTP-version CRLF
    let i = s;
    while (i < end && TCHAR[buf[i]!] === 1) i++;
    if (i === end) return -1;
    if (i === s || buf[i] !== SP) throw bad('invalid request line');
    this.#methodEnd = i - s;
    const t0 = ++i;
    let q = -1;
    for (; i < end; i++) {
      const k = TARGET[buf[i]!]!;
      if (k === 2 && q === -1) q = i;
      else if (k === 0) break;
    }
    if (i === end) return -1;
    if (buf[i] === 0x23) throw bad('fragment in the request target');
    if (i === t0 || buf[i] !== SP) throw bad('invalid request line');
    this.#query = q === -1 ? -1 : q - s;
    this.#targetEnd = i - s;
    const v = i + 1;
    // "HTTP/" DIGIT "." DIGIT CRLF
    if (v + 10 > end) {
      for (let k = v; k < end; k++) if (HTTP_VERSION[k - v] !== 0 && buf[k] !== HTTP_VERSION[k - v]) throw bad('invalid request line');
      return -1;
    }
    if (buf[v] !== 0x48 || buf[v + 1] !== 0x54 || buf[v + 2] !== 0x54 || buf[v + 3] !== 0x50 || buf[v + 4] !== 0x2f || buf[v + 6] !== 0x2e || buf[v + 8] !== CR || buf[v + 9] !== LF || !isDigit(buf[v + 5]!) || !isDigit(buf[v + 7]!)) {
      throw bad('invalid request line');
    }
    if (buf[v + 5] !== 0x31 || buf[v + 7]! > 0x31) throw new RequestParseError(505, 'HTTP version not supported');
    this.#minor = buf[v + 7]! - 0x30;
    return v + 10;
  }

  /** The second pass over the head #scan found in buf[s, e): its strings and framing, into the head object. */
  #build(buf: Buffer, s: number, e: number): void {
    const head = this.#head;
    const str = (buf as unknown as Latin1Slicer).latin1Slice(s, e);
    const method = methodName(buf, s, s + this.#methodEnd, str);
    if (method === 'CONNECT') throw new RequestParseError(501, 'CONNECT is not supported');
    const minor = this.#minor;
    head.method = method;
    head.versionMinor = minor;
    this.#target(buf, s, s + this.#methodEnd + 1, this.#query === -1 ? -1 : s + this.#query, s + this.#targetEnd, str, method);

    const names = head.names;
    const lines = this.#head.lines;
    const count = this.#count;
    // The head's bytes, for headerName: index them at base + an offset from the head's start.
    const view = viewOfBytes(buf);
    const base = viewBase + s;
    head.text = str;
    let contentLength = -1;
    let hosts = 0;
    let close = false;
    let keepAliveOption = false;
    let expectContinue = false;
    // Transfer-Encoding over all its lines: codings seen, chunked ones, whether the last was chunked.
    let codings = 0;
    let chunkeds = 0;
    let lastChunked = false;
    for (let k = 0; k < count; k++) {
      const at = k << 2;
      const n = lines[at + 1]!;
      const vs = lines[at + 2]!;
      const ve = lines[at + 3]!;
      const name = headerName(view, base, lines[at]!, n > 0 ? n : -n, str, n < 0);
      names[k] = name;
      switch (name.length) {
        case 4:
          if (name === 'host' && ++hosts > 1) throw bad('more than one Host header');
          break;
        case 6:
          if (name === 'expect' && ve - vs === 12 && str.slice(vs, ve).toLowerCase() === '100-continue') expectContinue = true;
          break;
        case 10:
          if (name === 'connection') {
            const options = connectionOptions(str.slice(vs, ve));
            if ((options & CLOSE) !== 0) close = true;
            if ((options & KEEP_ALIVE) !== 0) keepAliveOption = true;
          }
          break;
        case 14:
          if (name === 'content-length') {
            const length = contentLengthValue(buf, s + vs, s + ve);
            if (length < 0) throw bad('invalid Content-Length');
            if (contentLength !== -1 && contentLength !== length) throw bad('conflicting Content-Length');
            contentLength = length;
          }
          break;
        case 17:
          if (name === 'transfer-encoding') {
            // Each coding: a token, with parameters only for codings other than chunked.
            let from = s + vs;
            const until = s + ve;
            for (;;) {
              let to = from;
              while (to < until && buf[to] !== 0x2c) to++;
              let a = from;
              let b = to;
              while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
              while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
              const kind = codingKind(buf, a, b);
              if (kind === CODING_INVALID) throw bad('invalid Transfer-Encoding');
              codings++;
              lastChunked = kind === CODING_CHUNKED;
              if (lastChunked) chunkeds++;
              if (to >= until) break;
              from = to + 1;
            }
          }
          break;
      }
    }
    head.count = count;
    head.end = e - s - 2;
    let chunked = false;
    if (codings > 0) {
      // RFC 9112 6.1/6.3: chunked must be the final coding (and is applied once); a request
      // framed both ways, or an HTTP/1.0 one with codings, is a smuggling pattern.
      if (minor === 0) throw bad('Transfer-Encoding in an HTTP/1.0 request');
      if (contentLength !== -1) throw bad('Content-Length with Transfer-Encoding');
      if (!lastChunked || chunkeds > 1) throw bad('chunked must be the final transfer coding, once');
      if (codings > chunkeds) throw new RequestParseError(501, 'transfer coding not supported');
      chunked = true;
    }
    head.contentLength = contentLength;
    head.chunked = chunked;
    head.keepAlive = !close && (minor === 1 || keepAliveOption);
    head.expectContinue = expectContinue && minor === 1;
  }

  /** Sets url, query and authority from the request target buf[t0, t1) ('?' first at q, or -1). */
  #target(buf: Buffer, s: number, t0: number, q: number, t1: number, str: string, method: string): void {
    const head = this.#head;
    const first = buf[t0];
    const pathEnd = q === -1 ? t1 : q;
    head.query = q === -1 ? '' : str.slice(q + 1 - s, t1 - s);
    if (first === 0x2f) {
      // origin-form
      head.url = str.slice(t0 - s, pathEnd - s);
      head.authority = '';
      return;
    }
    if (first === 0x2a && t1 === t0 + 1) {
      // asterisk-form: OPTIONS only (RFC 9112 3.2.4)
      if (method !== 'OPTIONS') throw bad('invalid request target');
      head.url = '*';
      head.authority = '';
      return;
    }
    // absolute-form: http or https, "//" authority, then the path.
    const a = schemeEnd(buf, t0, pathEnd);
    if (a === -1) throw bad('invalid request target');
    let slash = a;
    while (slash < pathEnd && buf[slash] !== 0x2f) slash++;
    if (slash === a) throw bad('invalid request target');
    for (let k = a; k < slash; k++) if (buf[k] === 0x40) throw bad('userinfo in the request target');
    head.authority = str.slice(a - s, slash - s);
    head.url = slash === pathEnd ? '/' : str.slice(slash - s, pathEnd - s);
  }
}

/** The version's bytes, 0 where any digit may stand (checked once the line is whole). */
const HTTP_VERSION = new Uint8Array([0x48, 0x54, 0x54, 0x50, 0x2f, 0, 0x2e, 0, CR, LF]);

// Names and values are scanned four bytes at a time, as little-endian 32-bit words read
// through a DataView (unaligned reads are fine), with byte-wise tests that cannot carry
// from one byte into the next on the words they let through:
// - values: ((w - LOW) | (w + ONES)) & HIGH_BITS is 0 for a word of printable ASCII and
//   non-zero for any word holding a byte below 0x20 or DEL (and for some holding obs-text);
// - names: no byte has its high bit, and each is a letter (b | 0x20 is a lower-case one:
//   b + TO_A reaches 0x80 and b + PAST_Z does not) or '-' (b ^ DASHES is zero: the classic
//   zero-byte test); a letter whose 0x20 bit is clear (shifted up to the high bit by w << 2)
//   is an upper-case one.
// A word that fails is gone through byte by byte, which is exact.
const LOW = 0x20202020;
const ONES = 0x01010101;
const HIGH_BITS = 0x80808080 | 0;
const LOW_7 = 0x7f7f7f7f;
const TO_A = 0x1f1f1f1f; // 0x61 + 0x1f = 0x80
const PAST_Z = 0x05050505; // 0x7b + 0x05 = 0x80
const DASHES = 0x2d2d2d2d;
const CASE_BITS = 0x20202020;

let viewBytes: Buffer | null = null;
let viewOfBuffer: DataView | null = null;
let viewBase = 0;

/**
 * A DataView of `buf`'s whole ArrayBuffer, to index at viewBase + i, cached for the last
 * buffer: reads land in the same few (the thread's read buffer, a connection's kept head),
 * and the `buffer` and `byteOffset` getters cost more than a comparison.
 */
function viewOfBytes(buf: Buffer): DataView {
  if (buf !== viewBytes) {
    viewBytes = buf;
    if (viewOfBuffer === null || buf.buffer !== viewOfBuffer.buffer) viewOfBuffer = new DataView(buf.buffer);
    viewBase = buf.byteOffset;
  }
  return viewOfBuffer!;
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** The method as a string: the common ones without allocating. */
// Header names seen before, lower-cased, by length: a name whose bytes match one of them
// (ASCII case aside) is that string, so the dozen names every client repeats cost no slice
// and no lower-casing (a runtime call) per request. Bounded: the first NAMES_PER_LENGTH
// names of each length up to NAME_CACHE_MAX_LENGTH stay. Names are compared four bytes a
// step, both sides OR-ed with 0x20 in each byte: that folds A-Z onto a-z and changes no
// other token byte but '^' (onto '~') and '_' (onto DEL, which no name holds), so names
// with '^' or '~' are not kept (a byte-wise loop cost ~0.25 us a request for the OpenAI
// SDK's dozen names, measured).
const NAME_CACHE_MAX_LENGTH = 64;
const NAMES_PER_LENGTH = 8;
const cachedNames: string[][] = [];
/** Each kept name's bytes OR 0x20, as little-endian 32-bit words (the last one zero-padded). */
const cachedNameWords: Int32Array[][] = [];
for (let n = 0; n <= NAME_CACHE_MAX_LENGTH; n++) {
  cachedNames.push([]);
  cachedNameWords.push([]);
}
const FOLDING_AMBIGUOUS = /[\^~]/;

/** The lower-cased name at str[from, to) (view[base + from, base + to)); `upper`: it has an upper-case letter. */
function headerName(view: DataView, base: number, from: number, to: number, str: string, upper: boolean): string {
  const length = to - from;
  if (length > NAME_CACHE_MAX_LENGTH) return upper ? str.slice(from, to).toLowerCase() : str.slice(from, to);
  const names = cachedNames[length]!;
  const words = cachedNameWords[length]!;
  if (names.length > 0) {
    const at = base + from;
    const whole = length >> 2;
    const rest = length & 3;
    // The last 1-3 bytes as a zero-padded word.
    let tail = 0;
    if (rest !== 0) {
      const end = at + (whole << 2);
      tail = view.getUint8(end) | (rest > 1 ? view.getUint8(end + 1) << 8 : 0) | (rest > 2 ? view.getUint8(end + 2) << 16 : 0);
      tail |= CASE_BITS >>> (8 * (4 - rest));
    }
    for (let j = 0; j < names.length; j++) {
      const known = words[j]!;
      if (rest !== 0 && known[whole] !== tail) continue;
      // From the end: names of one length often share a prefix (x-stainless-arch, -lang).
      let k = whole - 1;
      for (; k >= 0; k--) if ((view.getInt32(at + (k << 2), true) | CASE_BITS) !== known[k]) break;
      if (k < 0) return names[j]!;
    }
  }
  const name = upper ? str.slice(from, to).toLowerCase() : str.slice(from, to);
  if (names.length < NAMES_PER_LENGTH && !FOLDING_AMBIGUOUS.test(name)) {
    names.push(name);
    words.push(foldedWords(name));
  }
  return name;
}

/** The words headerName compares a name with. */
function foldedWords(name: string): Int32Array {
  const out = new Int32Array((name.length + 3) >> 2);
  for (let i = 0; i < name.length; i++) out[i >> 2]! |= (name.charCodeAt(i) | 0x20) << (8 * (i & 3));
  return out;
}

function methodName(buf: Buffer, s: number, e: number, str: string): string {
  const c = buf[s];
  switch (e - s) {
    case 3:
      if (c === 0x47 && buf[s + 1] === 0x45 && buf[s + 2] === 0x54) return 'GET';
      if (c === 0x50 && buf[s + 1] === 0x55 && buf[s + 2] === 0x54) return 'PUT';
      break;
    case 4:
      if (c === 0x50 && buf[s + 1] === 0x4f && buf[s + 2] === 0x53 && buf[s + 3] === 0x54) return 'POST';
      if (c === 0x48 && buf[s + 1] === 0x45 && buf[s + 2] === 0x41 && buf[s + 3] === 0x44) return 'HEAD';
      break;
  }
  return str.slice(0, e - s);
}

/** The index after "http://" or "https://" (scheme case-insensitive) at buf[t0, end), or -1. */
function schemeEnd(buf: Buffer, t0: number, end: number): number {
  if (end - t0 < 7 || (buf[t0]! | 0x20) !== 0x68 || (buf[t0 + 1]! | 0x20) !== 0x74 || (buf[t0 + 2]! | 0x20) !== 0x74 || (buf[t0 + 3]! | 0x20) !== 0x70) return -1;
  let i = t0 + 4;
  if ((buf[i]! | 0x20) === 0x73) i++;
  if (i + 3 > end || buf[i] !== 0x3a || buf[i + 1] !== 0x2f || buf[i + 2] !== 0x2f) return -1;
  return i + 3;
}

const CODING_INVALID = 0;
const CODING_CHUNKED = 1;
const CODING_OTHER = 2;

/**
 * What the transfer coding in buf[a, b) is: "chunked" (any case, no parameters), another
 * token (with parameters, not checked further: refused with 501 anyway), or invalid
 * (empty, or not a token).
 */
function codingKind(buf: Buffer, a: number, b: number): number {
  let i = a;
  while (i < b && TCHAR[buf[i]!] === 1) i++;
  if (i === a) return CODING_INVALID;
  const chunked = isChunked(buf, a, i);
  if (i === b) return chunked ? CODING_CHUNKED : CODING_OTHER;
  // Parameters (OWS ";" ...), not checked further; chunked takes none.
  while (i < b && (buf[i] === SP || buf[i] === HTAB)) i++;
  return buf[i] !== 0x3b || chunked ? CODING_INVALID : CODING_OTHER;
}

/** buf[a, b) is "chunked", in any case. */
function isChunked(buf: Buffer, a: number, b: number): boolean {
  return b - a === 7 && (buf[a]! | 0x20) === 0x63 && (buf[a + 1]! | 0x20) === 0x68 && (buf[a + 2]! | 0x20) === 0x75 && (buf[a + 3]! | 0x20) === 0x6e &&
    (buf[a + 4]! | 0x20) === 0x6b && (buf[a + 5]! | 0x20) === 0x65 && (buf[a + 6]! | 0x20) === 0x64;
}

/** The value of a Content-Length field in buf[vs, ve): 1*DIGIT, or a list of identical such values; -1 if invalid. */
function contentLengthValue(buf: Buffer, vs: number, ve: number): number {
  let value = -1;
  let i = vs;
  for (;;) {
    const from = i;
    let n = 0;
    while (i < ve) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
      i++;
    }
    if (i === from || i - from > MAX_LENGTH_DIGITS) return -1;
    if (value !== -1 && value !== n) return -1;
    value = n;
    if (i === ve) return value;
    // Another element: OWS "," OWS.
    while (buf[i] === SP || buf[i] === HTAB) i++;
    if (buf[i] !== 0x2c) return -1;
    i++;
    while (buf[i] === SP || buf[i] === HTAB) i++;
    if (i >= ve) return -1;
  }
}

const CLOSE = 1;
const KEEP_ALIVE = 2;

/** Which of close and keep-alive the comma-separated options of a Connection value hold (case-insensitive). */
function connectionOptions(v: string): number {
  const length = v.length;
  if (length === 10 || length === 5) {
    const lower = v.toLowerCase();
    if (lower === 'keep-alive') return KEEP_ALIVE;
    if (lower === 'close') return CLOSE;
  }
  let options = 0;
  const lower = v.toLowerCase();
  for (let from = 0; from <= length; ) {
    let to = lower.indexOf(',', from);
    if (to === -1) to = length;
    let a = from;
    let b = to;
    while (a < b && (lower.charCodeAt(a) === SP || lower.charCodeAt(a) === HTAB)) a++;
    while (b > a && (lower.charCodeAt(b - 1) === SP || lower.charCodeAt(b - 1) === HTAB)) b--;
    if (b - a === 5 && lower.startsWith('close', a)) options |= CLOSE;
    else if (b - a === 10 && lower.startsWith('keep-alive', a)) options |= KEEP_ALIVE;
    from = to + 1;
  }
  return options;
}

function nameError(c: number, first: boolean): string {
  if (first && (c === SP || c === HTAB)) return 'folded header line (obs-fold)';
  if (c === SP || c === HTAB) return 'whitespace before the colon of a header line';
  if (c === CR || c === LF) return first ? 'bare CR or LF in the head' : 'header line without a colon';
  return 'invalid header name';
}


