// The thread's output buffer for the node front end's client connections, as uWS's cork
// buffer: the bytes of one connection collect here while it is corked (the gateway corks
// around every answer, and a read is handled corked) and leave in one write when the
// outermost cork ends. One connection owns it at a time; a write for another one first
// sends what the owner has. libuv writes from the buffer itself: when it keeps the buffer
// for a slow client, a fresh one takes its place (OutputTarget.send).

import { Buffer } from 'node:buffer';

/** A connection, as the buffer sends to it. */
export interface OutputTarget {
  /** Sends `data[0, length)`; true when libuv keeps `data` for later. */
  send(data: Buffer, length: number): boolean;
  /** Its bytes have been handed over (a connection that ends after its response closes now). */
  flushed(): void;
}

const INITIAL_BYTES = 64 * 1024;
// Up to this length a loop over char codes costs less than Buffer#write, a call into C++.
const SHORT_TEXT = 64;

let buf = Buffer.allocUnsafe(INITIAL_BYTES);
let end = 0;
let owner: OutputTarget | null = null;
let depth = 0;

let dateLine = Buffer.alloc(0);
/** `date: <IMF-fixdate>\r\n`, renewed every second by the server's sweep (as uWS does). */
export function refreshDate(): void {
  dateLine = Buffer.from(`date: ${new Date().toUTCString()}\r\n`, 'latin1');
}
refreshDate();

function flush(): void {
  const target = owner;
  if (target === null) return;
  const n = end;
  end = 0;
  if (n > 0 && target.send(buf, n)) buf = Buffer.allocUnsafe(INITIAL_BYTES);
  target.flushed();
}

/** Makes `target` the owner, sending the previous owner's bytes first. */
function claim(target: OutputTarget): void {
  if (owner !== target) {
    flush();
    owner = target;
  }
}

function room(bytes: number): void {
  if (end + bytes <= buf.length) return;
  const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, end + bytes));
  buf.copy(bigger, 0, 0, end);
  buf = bigger;
}

function text(target: OutputTarget, s: string): void {
  claim(target);
  const n = s.length;
  if (n <= SHORT_TEXT) {
    room(n);
    const b = buf;
    const at = end;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      b[at + i] = c;
    }
    if (i === n) {
      end = at + n;
      return;
    }
  }
  // UTF-8, as uWS converts strings: a JSON error may quote a model name in any script.
  room(n * 3);
  end += buf.write(s, end, 'utf8');
}

/**
 * A header value: one byte per character, as it was read (a client's x-request-id or Origin,
 * a server's Location are byte strings, src/byte-string.ts); `text` would send a client's
 * UTF-8 `é` back as four bytes. A string with a character past U+00FF was not read from
 * bytes: UTF-8.
 */
function headerText(target: OutputTarget, s: string): void {
  claim(target);
  const n = s.length;
  room(n);
  const b = buf;
  const at = end;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) {
      text(target, s);
      return;
    }
    b[at + i] = c;
  }
  end = at + n;
}

function bytes(target: OutputTarget, data: Uint8Array): void {
  claim(target);
  const n = data.length;
  room(n);
  if (n >= 16) buf.set(data, end);
  else for (let i = 0; i < n; i++) buf[end + i] = data[i]!;
  end += n;
}

export const clientOutput = {
  /** Starts a batch for `target`: its bytes leave when the outermost batch ends. */
  cork(target: OutputTarget): void {
    claim(target);
    depth++;
  },

  uncork(): void {
    if (--depth === 0) flush();
  },

  /**
   * Sends what `target` has in the buffer at once, inside a batch too: a connection about
   * to be destroyed (a cut answer) keeps the bytes already written for it, such as a head
   * and its framing line, so that the cut reads as a truncated answer, not an empty one.
   */
  sendNow(target: OutputTarget): void {
    if (owner === target) flush();
  },

  text,
  headerText,
  bytes,

  any(target: OutputTarget, data: string | Uint8Array | ArrayBuffer): void {
    if (typeof data === 'string') text(target, data);
    else bytes(target, data instanceof Uint8Array ? data : new Uint8Array(data));
  },

  /** The byte length `any` writes. */
  lengthOf(data: string | Uint8Array | ArrayBuffer): number {
    return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  },

  crlf(target: OutputTarget): void {
    claim(target);
    room(2);
    buf[end++] = 0x0d;
    buf[end++] = 0x0a;
  },

  date(target: OutputTarget): void {
    bytes(target, dateLine);
  },

  contentLength(target: OutputTarget, length: number): void {
    text(target, 'content-length: ');
    decimal(length);
    clientOutput.crlf(target);
  },

  /** A chunk size. */
  hex(target: OutputTarget, n: number): void {
    text(target, n.toString(16));
  },
};

function decimal(value: number): void {
  let digits = 1;
  for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
  room(digits);
  let at = end + digits;
  end = at;
  let v = value;
  do {
    const q = Math.floor(v / 10);
    buf[--at] = 0x30 + v - q * 10;
    v = q;
  } while (v > 0);
}
