// The chunked transfer coding (RFC 9112 7.1), decoded the same way on both sides of the
// proxy: client uploads (front-end/request-parser.ts) and replicas' responses
// (upstream/response-parser.ts). Sizes in hex; extensions dropped but checked against the
// grammar, as llhttp checks them, so that no two parsers on the path read a line apart;
// a CRLF after each chunk's data; the trailer section dropped, its lines checked, a
// Content-Length among them refused and a Connection noted. Chunk data is handed out as
// views of the bytes given to execute(), never copied.

import { Buffer } from 'node:buffer';
import { HeaderKind, kindOfNameBytes } from '../upstream/header-names.js';
import { hexValue, TCHAR, type ViewCache } from './bytes.js';

export interface ChunkedBodySink {
  /** A piece of chunk data, valid during the call only. False: execute() returns right after it. */
  onChunkData(chunk: Buffer): boolean;
}

const enum State {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
}

// Where a chunk extension is (RFC 9112 7.1.1, BWS included):
// *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) before the CRLF.
const enum Ext {
  BeforeSemi,
  BeforeName,
  Name,
  AfterName,
  BeforeValue,
  Token,
  Quoted,
  QuotedPair,
  AfterQuoted,
}

// Where a trailer section is: header lines, then an empty line.
const enum Trailer {
  LineStart,
  Name,
  Value,
  LineLf,
  EndLf,
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
// Chunk extensions of one body, at most: Node's http refuses a message with more (16 KiB).
const MAX_EXT_BYTES = 16 * 1024;
// Trailer names are kept up to this many bytes, enough to tell Content-Length and Connection.
const TRAILER_NAME_BYTES = 16;
// Sizes up to this, so that size * 16 + digit stays a safe integer.
const MAX_SIZE = Number.MAX_SAFE_INTEGER / 16;

/** A byte no field line may hold: a control byte other than HTAB, or DEL. */
const isControl = (c: number): boolean => (c < 0x20 && c !== HTAB) || c === 0x7f;

export class ChunkedBody {
  /** Makes the error execute() throws; `tooLarge`: the trailer section went over its budget. */
  readonly #fail: (message: string, tooLarge: boolean) => Error;
  /** The parser module's cache of views of the buffer it reads. */
  readonly #views: ViewCache;
  #state = State.Size;
  #remaining = 0;
  #sawSizeDigit = false;
  #ext = Ext.BeforeSemi;
  #extBytes = 0;
  #trailer = Trailer.LineStart;
  readonly #trailerName = new Uint8Array(TRAILER_NAME_BYTES);
  #trailerNameLength = 0;
  /** What the trailer section may still take, in bytes. */
  #trailerBudget = 0;
  /** The trailer section had a Connection line: the connection is not to be reused (as llhttp reads it). */
  connectionTrailer = false;

  constructor(views: ViewCache, fail: (message: string, tooLarge: boolean) => Error) {
    this.#views = views;
    this.#fail = fail;
  }

  /** A new body, whose trailer section may take `trailerBudget` bytes. */
  reset(trailerBudget: number): void {
    this.#state = State.Size;
    this.#remaining = 0;
    this.#sawSizeDigit = false;
    this.#extBytes = 0;
    this.#trailerBudget = trailerBudget;
    this.connectionTrailer = false;
  }

  /** The trailer section's empty line has been read. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /**
   * Decodes data[pos, end). Returns where it stopped: `end`; right after the body's last
   * byte (then `done`); or right after a piece the sink refused. Throws what `fail` makes.
   */
  execute(data: Buffer, pos: number, end: number, sink: ChunkedBodySink): number {
    while (pos < end) {
      switch (this.#state) {
        case State.Size: {
          const c = data[pos++]!;
          const digit = hexValue(c);
          if (digit >= 0) {
            this.#remaining = this.#remaining * 16 + digit;
            if (this.#remaining > MAX_SIZE) throw this.#fail('chunk size too large', false);
            this.#sawSizeDigit = true;
          } else if (!this.#sawSizeDigit) {
            throw this.#fail('invalid chunk size', false);
          } else if (c === CR) {
            this.#state = State.SizeLf;
          } else if (c === 0x3b || c === SP || c === HTAB) {
            this.#ext = c === 0x3b ? Ext.BeforeName : Ext.BeforeSemi;
            this.#state = State.Ext;
          } else {
            throw this.#fail('invalid chunk size', false);
          }
          break;
        }
        case State.Ext:
          pos = this.#readExt(data, pos, end);
          break;
        case State.SizeLf:
          if (data[pos++] !== LF) throw this.#fail('invalid chunk size line', false);
          if (this.#remaining === 0) {
            this.#state = State.Trailer;
            this.#trailer = Trailer.LineStart;
          } else {
            this.#state = State.Data;
          }
          break;
        case State.Data: {
          const n = Math.min(this.#remaining, end - pos);
          this.#remaining -= n;
          const chunk = this.#views.of(data, pos, pos + n);
          pos += n;
          if (this.#remaining === 0) this.#state = State.DataCr;
          if (!sink.onChunkData(chunk)) return pos;
          break;
        }
        case State.DataCr:
          if (data[pos++] !== CR) throw this.#fail('missing CRLF after chunk', false);
          this.#state = State.DataLf;
          break;
        case State.DataLf:
          if (data[pos++] !== LF) throw this.#fail('missing CRLF after chunk', false);
          this.#state = State.Size;
          this.#sawSizeDigit = false;
          break;
        case State.Trailer:
          pos = this.#readTrailer(data, pos, end);
          if ((this.#state as State) === State.Done) return pos;
          break;
        case State.Done:
          return pos;
      }
    }
    return pos;
  }

  /** Steps through a chunk extension; returns the new position. */
  #readExt(data: Buffer, pos: number, len: number): number {
    const from = pos;
    let e = this.#ext;
    scan: for (; pos < len; pos++) {
      const c = data[pos]!;
      switch (e) {
        case Ext.Name:
        case Ext.Token:
          if (TCHAR[c] === 1) continue;
          if (c === CR) break scan;
          if (c === 0x3b) e = Ext.BeforeName;
          else if (c === 0x3d && e === Ext.Name) e = Ext.BeforeValue;
          else if (c === SP || c === HTAB) e = e === Ext.Name ? Ext.AfterName : Ext.BeforeSemi;
          else throw this.#fail('invalid chunk extension', false);
          continue;
        case Ext.AfterQuoted:
          if (c === CR) break scan;
          if (c === 0x3b) e = Ext.BeforeName;
          else if (c === SP || c === HTAB) e = Ext.BeforeSemi;
          else throw this.#fail('invalid chunk extension', false);
          continue;
        case Ext.BeforeSemi:
        case Ext.AfterName:
          if (c === 0x3b) e = Ext.BeforeName;
          else if (c === 0x3d && e === Ext.AfterName) e = Ext.BeforeValue;
          else if (c !== SP && c !== HTAB) throw this.#fail('invalid chunk extension', false);
          continue;
        case Ext.BeforeName:
        case Ext.BeforeValue:
          if (TCHAR[c] === 1) e = e === Ext.BeforeName ? Ext.Name : Ext.Token;
          else if (c === 0x22 && e === Ext.BeforeValue) e = Ext.Quoted;
          else if (c !== SP && c !== HTAB) throw this.#fail('invalid chunk extension', false);
          continue;
        case Ext.Quoted:
          if (c === 0x22) e = Ext.AfterQuoted;
          else if (c === 0x5c) e = Ext.QuotedPair;
          else if (isControl(c)) throw this.#fail('invalid chunk extension', false);
          continue;
        case Ext.QuotedPair:
          if (isControl(c)) throw this.#fail('invalid chunk extension', false);
          e = Ext.Quoted;
          continue;
      }
    }
    this.#extBytes += pos - from;
    if (this.#extBytes > MAX_EXT_BYTES) throw this.#fail('chunk extensions too large', false);
    this.#ext = e;
    if (pos === len) return len;
    this.#state = State.SizeLf;
    return pos + 1;
  }

  /** Steps through the trailer section; returns the new position. */
  #readTrailer(data: Buffer, pos: number, len: number): number {
    const from = pos;
    const name = this.#trailerName;
    let tr = this.#trailer;
    let n = this.#trailerNameLength;
    for (; pos < len; pos++) {
      const c = data[pos]!;
      switch (tr) {
        case Trailer.LineStart:
          if (c === CR) tr = Trailer.EndLf;
          else if (TCHAR[c] === 1) {
            tr = Trailer.Name;
            name[0] = c;
            n = 1;
          } else throw this.#fail(c === SP || c === HTAB ? 'folded trailer line (obs-fold)' : 'invalid trailer line', false);
          continue;
        case Trailer.Name:
          if (TCHAR[c] === 1) {
            if (n < TRAILER_NAME_BYTES) name[n] = c;
            n++;
          } else if (c === 0x3a) {
            const kind = n <= TRAILER_NAME_BYTES ? kindOfNameBytes(name, 0, n) : HeaderKind.Other;
            if (kind === HeaderKind.ContentLength) throw this.#fail('Content-Length in the trailer section', false);
            if (kind === HeaderKind.Connection) this.connectionTrailer = true;
            tr = Trailer.Value;
          } else throw this.#fail('invalid trailer line', false);
          continue;
        case Trailer.Value:
          if (c === CR) tr = Trailer.LineLf;
          else if (isControl(c)) throw this.#fail('control character in a trailer line', false);
          continue;
        case Trailer.LineLf:
          if (c !== LF) throw this.#fail('bare CR or LF in a trailer line', false);
          tr = Trailer.LineStart;
          continue;
        case Trailer.EndLf:
          if (c !== LF) throw this.#fail('bare CR or LF in a trailer line', false);
          this.#spend(pos + 1 - from);
          this.#state = State.Done;
          return pos + 1;
      }
    }
    this.#spend(pos - from);
    this.#trailer = tr;
    this.#trailerNameLength = n;
    return pos;
  }

  #spend(bytes: number): void {
    this.#trailerBudget -= bytes;
    if (this.#trailerBudget < 0) throw this.#fail('trailer section too large', true);
  }
}
