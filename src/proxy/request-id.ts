// Request ids laid out as UUID v4 strings (`xxxxxxxx-xxxx-4xxx-Vxxx-cccccccccccc`), which
// real model servers accept where they validate x-request-id (llama-cpp-python's server
// answers 400 to anything else). No crypto call per request: each generator draws its
// random part once, and the last group is a 48-bit counter started at a random value.
// Two generators collide only if their 62 random bits and counters both match.

import { randomBytes } from 'node:crypto';

// The counter stays within 12 hex digits from its random start (>= 2^44) up to 2^48 - 1,
// so its hex needs no padding: then it wraps back to 2^44.
const COUNTER_MIN = 0x1000_0000_0000;
const COUNTER_END = 0x1_0000_0000_0000;

export class RequestIds {
  readonly #prefix: string;
  #counter: number;

  constructor() {
    const r = randomBytes(16);
    const hex = r.toString('hex');
    // Version nibble 4; variant bits 10 (the first hex digit of the fourth group is 8-b).
    const variant = (8 | (r[8]! & 3)).toString(16);
    this.#prefix = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(12, 15)}-${variant}${hex.slice(15, 18)}-`;
    this.#counter = COUNTER_MIN + (r.readUIntBE(10, 6) % (COUNTER_END - COUNTER_MIN));
  }

  next(): string {
    let n = this.#counter + 1;
    if (n >= COUNTER_END) n = COUNTER_MIN;
    this.#counter = n;
    return this.#prefix + n.toString(16);
  }
}
