// Request ids laid out as UUID v4 strings (`xxxxxxxx-xxxx-4xxx-Vxxx-hhhhhhllllll`), which
// real model servers accept where they validate x-request-id (llama-cpp-python's server
// answers 400 to anything else). No crypto call per request: each generator draws its
// random part once, and the last group is a 48-bit counter from a random start.
// Two generators collide only if their 62 random bits and counters both match.

import { randomBytes } from 'node:crypto';

// The counter's low 24 bits stay a small integer within [2^20, 2^24), six hex digits with no
// padding: a 48-bit number would be a heap double, whose hex costs ~5x more per id. When
// they wrap, the high 24 bits (kept in the prefix string) move on.
const LOW_MIN = 0x10_0000;
const LOW_END = 0x100_0000;

export class RequestIds {
  readonly #random: string;
  #high: number;
  #prefix = '';
  #low: number;

  constructor() {
    const r = randomBytes(16);
    const hex = r.toString('hex');
    // Version nibble 4; variant bits 10 (the first hex digit of the fourth group is 8-b).
    const variant = (8 | (r[8]! & 3)).toString(16);
    this.#random = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(12, 15)}-${variant}${hex.slice(15, 18)}-`;
    this.#high = r.readUIntBE(10, 3);
    this.#low = LOW_MIN + (r.readUIntBE(13, 3) % (LOW_END - LOW_MIN));
    this.#setPrefix();
  }

  next(): string {
    let low = this.#low + 1;
    if (low === LOW_END) {
      low = LOW_MIN;
      this.#high = (this.#high + 1) & 0xff_ffff;
      this.#setPrefix();
    }
    this.#low = low;
    return this.#prefix + low.toString(16);
  }

  #setPrefix(): void {
    this.#prefix = this.#random + this.#high.toString(16).padStart(6, '0');
  }
}
