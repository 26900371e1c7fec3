import { Buffer } from 'node:buffer';
import { HeaderKind } from './header-names.js';

const EMPTY = Buffer.alloc(0);
const SHORT_LINE_BYTES = 96;

/**
 * The header lines of the upstream response head being delivered, as byte offsets into the
 * buffer the head was read into: the proxy copies the lines it keeps straight into the
 * client's head, so a response costs no string per header. One instance per parser, reused;
 * valid only during the parser's onHead call.
 */
export class HeaderLines {
  buf: Buffer = EMPTY;
  count = 0;
  /** Per line i: name start, name end, value start, value end (trimmed) at 4i..4i+3. */
  offsets = new Int32Array(4 * 32);
  kinds = new Uint8Array(32);
  /** Header names listed in a Connection header beyond close/keep-alive (rare): hop-by-hop too. */
  hop: string[] | null = null;
  /** These lines describe a head identical, byte for byte, to the one they were parsed from (the parser's memo). */
  repeated = false;
  /**
   * What the proxy derived from these lines and may reuse while they are repeated: the
   * client head it built (status line and the lines it kept) and the stream format found.
   */
  clientHead: Uint8Array | null = null;
  clientKind = 0;
  /** clientHead left out the upstream's RateLimit-* lines (the gateway sent its own). */
  clientOwnRateLimit = false;
  /** clientHead left out the upstream's Access-Control-* lines (a request at the root: the gateway's CORS policy answers, proxy/cors.ts). */
  clientOwnCors = false;
  /** The head's Content-Encoding, '' when it has none (Exchange #codedAs). */
  clientEncoding = '';

  reset(buf: Buffer): void {
    this.buf = buf;
    this.count = 0;
    this.hop = null;
    this.repeated = false;
    this.clientHead = null;
  }

  /** The same lines again, for a head equal to the last one, now in `buf` at the same offsets. */
  repeat(buf: Buffer): void {
    this.buf = buf;
    this.repeated = true;
  }

  /** The buffer is the connection's read buffer: let it go once the head is delivered. */
  release(): void {
    this.buf = EMPTY;
  }

  add(nameStart: number, nameEnd: number, valueStart: number, valueEnd: number, kind: HeaderKind): void {
    const i = this.count++;
    if (i === this.kinds.length) {
      const offsets = new Int32Array(this.offsets.length * 2);
      offsets.set(this.offsets);
      this.offsets = offsets;
      const kinds = new Uint8Array(this.kinds.length * 2);
      kinds.set(this.kinds);
      this.kinds = kinds;
    }
    const o = this.offsets;
    o[4 * i] = nameStart;
    o[4 * i + 1] = nameEnd;
    o[4 * i + 2] = valueStart;
    o[4 * i + 3] = valueEnd;
    this.kinds[i] = kind;
  }

  kind(i: number): HeaderKind {
    return this.kinds[i]! as HeaderKind;
  }

  name(i: number): string {
    return this.buf.toString('latin1', this.offsets[4 * i]!, this.offsets[4 * i + 1]!);
  }

  value(i: number): string {
    return this.buf.toString('latin1', this.offsets[4 * i + 2]!, this.offsets[4 * i + 3]!);
  }

  /** Copies line i as `\r\n<name>: <value>` (the CRLF that preceded it in the head) into `target` at `pos`; returns the new end. */
  copyLine(i: number, target: Buffer, pos: number): number {
    let from = this.offsets[4 * i]! - 2;
    const to = this.offsets[4 * i + 3]!;
    const src = this.buf;
    // A header line is short: a byte loop costs less than Buffer#copy, which makes a view
    // of the source range and crosses into C++ for each line.
    if (to - from > SHORT_LINE_BYTES) return pos + src.copy(target, pos, from, to);
    while (from < to) target[pos++] = src[from++]!;
    return pos;
  }

  /** Bytes copyLine writes for line i. */
  lineBytes(i: number): number {
    return this.offsets[4 * i + 3]! - this.offsets[4 * i]! + 2;
  }

  /** Flat `[name, value, name, value...]` strings, for what keeps the head (cache, joiners). */
  toArray(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.name(i), this.value(i));
    return out;
  }
}
