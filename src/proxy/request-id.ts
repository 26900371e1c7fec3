// Request ids laid out as UUID v4 strings (`xxxxxxxx-xxxx-4xxx-Vxxx-hhhhhhllllll`), which
// real model servers accept where they validate x-request-id (llama-cpp-python's server
// answers 400 to anything else). No crypto call per request: each generator draws its
// random part once, and the last group is a 48-bit counter from a random start.
// Two generators collide only if their 62 random bits and counters both match.

import { randomBytes } from 'node:crypto';

// The counter's low 24 bits stay a small integer within [2^20, 2^24), six hex digits with no
// padding. When they wrap, the high 24 bits (part of the fixed prefix) move on.
const LOW_MIN = 0x10_0000;
const LOW_END = 0x100_0000;
const PREFIX_LENGTH = 30;
const HEX = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

type IdMaker = (low: number) => string;

export class RequestIds {
  readonly #random: string;
  #high: number;
  #make: IdMaker;
  #low: number;

  constructor() {
    const r = randomBytes(16);
    const hex = r.toString('hex');
    // Version nibble 4; variant bits 10 (the first hex digit of the fourth group is 8-b).
    const variant = (8 | (r[8]! & 3)).toString(16);
    this.#random = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(12, 15)}-${variant}${hex.slice(15, 18)}-`;
    this.#high = r.readUIntBE(10, 3);
    this.#low = LOW_MIN + (r.readUIntBE(13, 3) % (LOW_END - LOW_MIN));
    this.#make = idMaker(this.#prefix());
  }

  next(): string {
    let low = this.#low + 1;
    if (low === LOW_END) {
      low = LOW_MIN;
      this.#high = (this.#high + 1) & 0xff_ffff;
      this.#make = idMaker(this.#prefix());
    }
    this.#low = low;
    return this.#make(low);
  }

  #prefix(): string {
    return this.#random + this.#high.toString(16).padStart(6, '0');
  }
}

/**
 * The ids of one prefix, each made by a single String.fromCharCode call: a flat string,
 * where prefix + hex would make a rope that every reader of its characters (the response
 * head writer) first flattens through a runtime call. With the prefix's char codes as
 * separate arguments this costs about a sixth of toString(16), the concatenation and that
 * flattening together (~50 ns against ~300 on Node 20).
 */
function idMaker(prefix: string): IdMaker {
  if (prefix.length !== PREFIX_LENGTH) throw new Error(`request id prefix of ${prefix.length} characters`);
  const [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29] =
    Array.from(prefix, (c) => c.charCodeAt(0)) as number[];
  return (v) => String.fromCharCode(
    c0!, c1!, c2!, c3!, c4!, c5!, c6!, c7!, c8!, c9!, c10!, c11!, c12!, c13!, c14!, c15!, c16!, c17!, c18!, c19!, c20!, c21!, c22!, c23!, c24!, c25!, c26!, c27!, c28!, c29!,
    HEX[v >>> 20]!, HEX[(v >>> 16) & 15]!, HEX[(v >>> 12) & 15]!, HEX[(v >>> 8) & 15]!, HEX[(v >>> 4) & 15]!, HEX[v & 15]!,
  );
}

/**
 * What Python's uuid.UUID takes (llama-cpp-python validates x-request-id with it): 32 hex
 * digits once hyphens are left out. Its braces and `urn:uuid:` forms are not taken here:
 * such an id is replaced as any other that is not one.
 */
export function isUuid(id: string): boolean {
  let digits = 0;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c === 0x2d) continue;
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))) return false;
    digits++;
  }
  return digits === 32;
}
