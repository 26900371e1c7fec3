// Decodes a compressed answer as its chunks pass, for the token counter: the usage is in
// the decoded bytes. zlib runs on libuv's thread pool, so the worker thread neither waits
// for it nor keeps a copy of the answer: decoding a whole answer at its end, synchronously,
// had stopped every request of the worker for as long as it took (milliseconds for a
// large answer), and only its first 4 MiB had been read.

import { constants, createBrotliDecompress, createGunzip, createInflate, createInflateRaw, type BrotliDecompress, type Gunzip, type Inflate, type InflateRaw } from 'node:zlib';

type Decompressor = Gunzip | Inflate | InflateRaw | BrotliDecompress;

/** Decoding stops past this many bytes (a compression bomb would keep the thread pool busy): what follows is not read. */
const MAX_DECODED_BYTES = 256 * 1024 * 1024;
/**
 * Copies waiting for zlib: an answer arriving faster than the thread pool decodes it (a busy
 * pool) stops being read past this many, rather than held in memory without bound.
 */
const MAX_WAITING_BYTES = 32 * 1024 * 1024;
// An answer cut short, or ended before its last unit, gives out what its bytes decode to.
const ZLIB_OPTIONS = { finishFlush: constants.Z_SYNC_FLUSH } as const;
const BROTLI_OPTIONS = { finishFlush: constants.BROTLI_OPERATION_FLUSH } as const;

export class AnswerDecoder {
  readonly #coding: string;
  readonly #sink: (decoded: Buffer) => void;
  /** Made at the first chunk (a `deflate` answer's format is read from it); null once closed. */
  #stream: Decompressor | null = null;
  #closed = false;
  #decodedBytes = 0;
  #onClosed: (() => void) | null = null;

  private constructor(coding: string, sink: (decoded: Buffer) => void) {
    this.#coding = coding;
    this.#sink = sink;
  }

  /** A decoder for a Content-Encoding coding (contentCoding's, lower case) giving its output to `sink`; null for a coding it does not know, or several. */
  static for(coding: string, sink: (decoded: Buffer) => void): AnswerDecoder | null {
    return coding === 'gzip' || coding === 'x-gzip' || coding === 'deflate' || coding === 'br' ? new AnswerDecoder(coding, sink) : null;
  }

  /** The answer's next bytes (a view the caller reuses: they are copied). */
  write(chunk: Buffer): void {
    if (this.#closed) return;
    const stream = this.#stream ?? this.#open(chunk);
    if (stream.writableLength > MAX_WAITING_BYTES) this.#stop(stream);
    else stream.write(Buffer.from(chunk));
  }

  /**
   * The answer has ended: true when some of it is still being decoded, and then `done` is
   * called once all of it has been given to the sink (or the bytes turned out not to decode).
   */
  end(done: () => void): boolean {
    const stream = this.#stream;
    if (stream === null || this.#closed) {
      this.#closed = true;
      return false;
    }
    this.#onClosed = done;
    stream.end();
    return true;
  }

  #open(first: Buffer): Decompressor {
    const stream = makeStream(this.#coding, first);
    stream.on('data', (decoded: Buffer) => {
      this.#decodedBytes += decoded.length;
      if (this.#decodedBytes > MAX_DECODED_BYTES) this.#stop(stream);
      else if (!this.#closed) this.#sink(decoded);
    });
    // Bytes that do not decode: what came before them has been read, the rest is not.
    stream.on('error', () => {});
    // After the last output, after an error, after a destroy: 'close' always comes.
    stream.on('close', () => {
      this.#closed = true;
      const done = this.#onClosed;
      this.#onClosed = null;
      done?.();
    });
    this.#stream = stream;
    return stream;
  }

  /** Reads no more of the answer: what has been given to the sink stands. */
  #stop(stream: Decompressor): void {
    this.#closed = true;
    stream.destroy();
  }
}

function makeStream(coding: string, first: Buffer): Decompressor {
  switch (coding) {
    case 'deflate':
      // RFC 9110's deflate is the zlib format; some servers send raw deflate, told apart by
      // the zlib header (compression method 8, the first two bytes a multiple of 31).
      return first.length < 2 || ((first[0]! & 0x0f) === 8 && ((first[0]! << 8) | first[1]!) % 31 === 0) ? createInflate(ZLIB_OPTIONS) : createInflateRaw(ZLIB_OPTIONS);
    case 'br':
      return createBrotliDecompress(BROTLI_OPTIONS);
    default:
      return createGunzip(ZLIB_OPTIONS);
  }
}
