// Incremental HTTP/1.1 response parser. It hands body bytes out as views of the socket's
// buffers (never copies), decodes chunked framing, and reports the framing facts the
// proxy needs (length, keep-alive). One parser lives per upstream connection and is
// reset per response, so it allocates nothing per response except header strings.

import { sameName } from './header-names.js';

export interface ResponseSink {
  /** `headers` is flat: name, value, name, value... with names as the server sent them. */
  onHead(status: number, headers: string[], contentLength: number, chunked: boolean): void;
  onBody(chunk: Buffer): void;
  onComplete(): void;
}

const MAX_HEAD_BYTES = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

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
          const chunk = pos === 0 && n === data.length ? data : data.subarray(pos, pos + n);
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
          const chunk = data.subarray(pos, pos + n);
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
          const chunk = pos === 0 && len === data.length ? data : data.subarray(pos, len);
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
    let buf = data;
    let start = pos;
    let prevLen = 0;
    let bufLen = len;
    if (this.#partialHead !== null) {
      prevLen = this.#partialHead.length;
      buf = Buffer.concat([this.#partialHead, data.subarray(pos, len)]);
      bufLen = buf.length;
      start = 0;
      this.#partialHead = null;
    }
    // Search from a little before the join so a CRLFCRLF split across reads is found.
    let end = buf.indexOf(CRLFCRLF, Math.max(start, prevLen - 3));
    if (end + 4 > bufLen) end = -1; // found in stale bytes past this read
    if (end === -1) {
      if (bufLen - start > MAX_HEAD_BYTES) throw new ParseError('response head too large');
      this.#partialHead = Buffer.from(buf.subarray(start, bufLen));
      return len;
    }
    const consumedFromData = prevLen === 0 ? end + 4 : end + 4 - prevLen + pos;
    this.#parseHead(buf.toString('latin1', start, end));
    return consumedFromData;
  }

  #parseHead(head: string): void {
    // "HTTP/1.1 200 OK"
    if (head.length < 12 || !head.startsWith('HTTP/1.')) throw new ParseError('invalid status line');
    const status = (head.charCodeAt(9) - 48) * 100 + (head.charCodeAt(10) - 48) * 10 + (head.charCodeAt(11) - 48);
    if (!(status >= 100 && status <= 999)) throw new ParseError('invalid status code');
    const http10 = head.charCodeAt(7) === 48;
    let keepAlive = !http10;
    let contentLength = -1;
    let chunked = false;
    const headers: string[] = [];
    // Lines end at LF, which must follow a CR; a bare CR or LF inside a line would let the
    // upstream inject lines into the head the gateway writes to its client (response splitting).
    let lf = head.indexOf('\n');
    if (lf !== -1 && head.charCodeAt(lf - 1) !== 13) throw new ParseError('bare CR or LF in a header line');
    while (lf !== -1) {
      const lineStart = lf + 1;
      lf = head.indexOf('\n', lineStart);
      const lineEnd = lf === -1 ? head.length : lf - 1;
      const cr = head.indexOf('\r', lineStart);
      if ((cr !== -1 && cr < lineEnd) || (lf !== -1 && head.charCodeAt(lineEnd) !== 13)) throw new ParseError('bare CR or LF in a header line');
      const colon = head.indexOf(':', lineStart);
      if (colon === -1 || colon > lineEnd || colon === lineStart) throw new ParseError('invalid header line');
      const name = head.slice(lineStart, colon);
      let vs = colon + 1;
      let ve = lineEnd;
      while (vs < ve && (head.charCodeAt(vs) === 32 || head.charCodeAt(vs) === 9)) vs++;
      while (ve > vs && (head.charCodeAt(ve - 1) === 32 || head.charCodeAt(ve - 1) === 9)) ve--;
      const value = head.slice(vs, ve);
      // Cheap length checks before lower-casing, as undici's client-h1 does.
      if (sameName(name, 'content-length')) {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < 0 || value === '') throw new ParseError('invalid content-length');
        if (contentLength !== -1 && contentLength !== n) throw new ParseError('conflicting content-length');
        contentLength = n;
      } else if (sameName(name, 'transfer-encoding')) {
        chunked = sameName(value, 'chunked') || value.toLowerCase().endsWith('chunked');
      } else if (sameName(name, 'connection')) {
        if (sameName(value, 'keep-alive')) keepAlive = true;
        else {
          const v = value.toLowerCase();
          if (v.includes('close')) keepAlive = false;
          else if (v.includes('keep-alive')) keepAlive = true;
        }
      }
      headers.push(name, value);
    }
    if (status < 200) {
      // 1xx (100 Continue, 103 Early Hints): informational, the real head follows.
      if (status === 101) throw new ParseError('protocol upgrade is not supported');
      return;
    }
    this.headReceived = true;
    if (chunked) contentLength = -1; // RFC 9112 6.3: Transfer-Encoding wins over Content-Length.
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
    this.#sink.onHead(status, headers, contentLength, chunked);
    if (this.#state === State.Done) this.#sink.onComplete();
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}
