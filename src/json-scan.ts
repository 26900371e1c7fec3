// Byte-level reading of JSON request bodies, for the few decisions the data plane makes
// from a body (the front door's `model`, the cache's sampled requests) without parsing it
// into objects: a parse allocates the whole tree to read one field. These functions do not
// validate JSON; the model server does that. They only keep to its structure (strings with
// escapes, nesting), so that a key inside a string or a nested object is never mistaken
// for a top-level one.

export function skipSpace(body: Uint8Array, i: number): number {
  for (let c = body[i]; c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = body[++i]);
  return i;
}

/** Strings are read byte by byte up to this length, then searched natively: a native call costs more than a short loop. */
const SHORT_STRING = 32;

/** The index of the quote closing the string that opens at `i`; -1 when it never closes. */
export function stringEnd(body: Buffer, i: number): number {
  const short = Math.min(body.length, i + 1 + SHORT_STRING);
  let j = i + 1;
  for (; j < short; j++) {
    const c = body[j];
    if (c === 0x22) return j;
    if (c === 0x5c) j++;
  }
  // A long string (a document, an image in base64): memchr for each quote, then whether it is escaped.
  for (;;) {
    const q = body.indexOf(0x22, j);
    if (q === -1) return -1;
    let k = q - 1;
    while (body[k] === 0x5c) k--;
    if (((q - 1 - k) & 1) === 0) return q;
    j = q + 1;
  }
}

/** The index just past the value that starts at `i`; -1 when it does not end. */
export function valueEnd(body: Buffer, i: number): number {
  const c = body[i];
  if (c === 0x22) {
    const q = stringEnd(body, i);
    return q === -1 ? -1 : q + 1;
  }
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < body.length; j++) {
      const b = body[j];
      if (b === 0x22) {
        j = stringEnd(body, j);
        if (j === -1) return -1;
      } else if (b === 0x7b || b === 0x5b) depth++;
      else if ((b === 0x7d || b === 0x5d) && --depth === 0) return j + 1;
    }
    return -1;
  }
  // A number or a literal: up to the next delimiter.
  let j = i;
  for (let b = body[j]; b !== undefined && b !== 0x2c && b !== 0x7d && b !== 0x5d && b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09; b = body[++j]);
  return j === i ? -1 : j;
}

export const enum FieldScan {
  /** The field is there once, with a string value: FieldSpan holds where. */
  Found = 0,
  Missing = 1,
  /** There, but not a string (null, a number, an object...). */
  NotString = 2,
  /** More than once at the top level: readers disagree on which one counts. */
  Duplicate = 3,
  /** Not a JSON object (or cut short). */
  Invalid = 4,
}

/**
 * A key to look for, as its quoted bytes (`"model"`), searched with wordSkips' tables:
 * Buffer.indexOf of a multi-byte needle costs some 400 ns per call, far more than a body
 * of chat messages takes to skim in JS.
 */
export class JsonKey {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly #skips: WordSkips;

  constructor(name: string) {
    this.name = name;
    this.bytes = Buffer.from(JSON.stringify(name));
    // wordSkips reads a word's bytes as latin1 characters.
    this.#skips = wordSkips([Buffer.from(this.bytes).toString('latin1')]);
  }

  /** The first index at or after `from` where the quoted key's bytes start; -1 when none. */
  indexIn(body: Uint8Array, from: number): number {
    const bytes = this.bytes;
    const last = bytes.length - 1;
    const { skip, afterLook } = this.#skips;
    for (let j = from; j + last < body.length;) {
      const c = body[j + last]!;
      const by = skip[c]!;
      if (by !== 0) {
        j += by;
        continue;
      }
      if (bytesAt(body, j, bytes)) return j;
      j += afterLook[c]!;
    }
    return -1;
  }
}

/**
 * Whether a `\u` escape may follow `from`: a key spelled with such escapes
 * (`"mod\u0065l"`) is the same key to every JSON parser, and no other escape stands for a
 * letter or a digit. Backslashes are found natively (memchr: ~15 ns for a chat body, where
 * a JS loop takes ~0.4 us); an escaped backslash before a `u` reads as one too, which
 * only means reading on.
 */
function unicodeEscapeAfter(body: Buffer, from: number): boolean {
  for (let k = body.indexOf(0x5c, from); k !== -1; k = body.indexOf(0x5c, k + 2)) {
    if (body[k + 1] === 0x75) return true;
  }
  return false;
}

/** Where scanTopLevelString found the value, quotes included; valid until the next call. */
export const fieldSpan = { start: 0, end: 0 };

/**
 * Looks for the top-level string field `key` (its quoted name as bytes: `"model"`) in a
 * JSON object, and reports where its value is in fieldSpan. A second occurrence, however
 * it is spelled, is reported as Duplicate, since the gateway and the model server must not
 * read different values; but once the field is found, the rest is read only when the
 * key's bytes or a `\u` escape appear in it (a quoted key cannot appear inside a JSON
 * string unescaped, and its letters can be escaped no other way), so the usual body,
 * `model` first, is read no further than its value, and what follows it is left to the
 * model server to validate.
 */
export function scanTopLevelString(body: Buffer, key: JsonKey): FieldScan {
  let i = skipSpace(body, 0);
  if (body[i] !== 0x7b) return FieldScan.Invalid;
  i = skipSpace(body, i + 1);
  if (body[i] === 0x7d) return trailing(body, i + 1, FieldScan.Missing);
  let found = FieldScan.Missing;
  for (;;) {
    if (body[i] !== 0x22) return FieldScan.Invalid;
    const keyEnd = stringEnd(body, i);
    if (keyEnd === -1) return FieldScan.Invalid;
    const isKey = keyEnd + 1 - i === key.bytes.length ? bytesAt(body, i, key.bytes) : escapedKey(body, i, keyEnd, key);
    i = skipSpace(body, keyEnd + 1);
    if (body[i] !== 0x3a) return FieldScan.Invalid;
    i = skipSpace(body, i + 1);
    const start = i;
    i = valueEnd(body, i);
    if (i === -1) return FieldScan.Invalid;
    if (isKey) {
      if (found !== FieldScan.Missing) return FieldScan.Duplicate;
      if (body[start] === 0x22) {
        found = FieldScan.Found;
        fieldSpan.start = start;
        fieldSpan.end = i;
      } else found = FieldScan.NotString;
      if (key.indexIn(body, i) === -1 && !unicodeEscapeAfter(body, i)) return found;
    }
    i = skipSpace(body, i);
    const c = body[i];
    if (c === 0x2c) i = skipSpace(body, i + 1);
    else if (c === 0x7d) return trailing(body, i + 1, found);
    else return FieldScan.Invalid;
  }
}

/** The key string from `open` to `close` (its quotes) is `key` spelled with escapes. */
function escapedKey(body: Buffer, open: number, close: number, key: JsonKey): boolean {
  // Each escape is at least two bytes for one character: a longer key may be one, a shorter cannot.
  if (close + 1 - open < key.bytes.length) return false;
  let escaped = false;
  for (let j = open + 1; j < close; j++) if (body[j] === 0x5c) escaped = true;
  if (!escaped) return false;
  try {
    return JSON.parse(body.toString('utf8', open, close + 1)) === key.name;
  } catch {
    // Not a JSON string: the server refuses the body.
    return false;
  }
}

function trailing(body: Buffer, i: number, result: FieldScan): FieldScan {
  return skipSpace(body, i) === body.length ? result : FieldScan.Invalid;
}

/**
 * Tables for a search that looks at one byte in `width` where it can (Horspool's, for
 * several words at once), `width` being the length of each of `words` (the part of a longer
 * word that is searched for). A window of `width` bytes ending in byte c moves on by
 * `skip[c]`, or, when that is 0 (c may end a word), the caller looks at the window and
 * then moves on by `afterLook[c]`. Cheaper than a native Buffer#indexOf per word on bodies
 * of a few hundred bytes, whose call and set-up cost more than the search.
 */
export interface WordSkips {
  readonly width: number;
  readonly skip: Uint8Array;
  readonly afterLook: Uint8Array;
}

/** `words` as latin1 text: one character a byte. */
export function wordSkips(words: readonly string[]): WordSkips {
  const width = words[0]!.length;
  const skip = new Uint8Array(256).fill(width);
  const afterLook = new Uint8Array(256).fill(width);
  for (const word of words) {
    if (word.length !== width || width > 255) throw new Error('wordSkips: words of one length, at most 255');
    for (let j = 0; j < width - 1; j++) {
      const c = word.charCodeAt(j);
      skip[c] = afterLook[c] = Math.min(skip[c]!, width - 1 - j);
    }
  }
  for (const word of words) skip[word.charCodeAt(width - 1)] = 0;
  return { width, skip, afterLook };
}

/** `bytes` stand in `body` at `at` (false when `body` ends first). */
export function bytesAt(body: Uint8Array, at: number, bytes: Uint8Array): boolean {
  for (let k = 0; k < bytes.length; k++) if (body[at + k] !== bytes[k]) return false;
  return true;
}

// The last string read, by its bytes: requests name the same few models, and a name
// decoded again is a new string, which the route table's Map lookup then hashes again.
const lastSpanBytes = new Uint8Array(64);
let lastSpanLength = -1;
let lastSpan = '';

/** The string value in fieldSpan, unescaped. */
export function spanString(body: Buffer): string {
  const start = fieldSpan.start + 1;
  const end = fieldSpan.end - 1;
  const n = end - start;
  if (n === lastSpanLength) {
    let k = 0;
    while (k < n && body[start + k] === lastSpanBytes[k]) k++;
    if (k === n) return lastSpan;
  }
  const raw = body.toString('utf8', start, end);
  const value = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
  if (n <= lastSpanBytes.length) {
    lastSpanBytes.set(body.subarray(start, end));
    lastSpanLength = n;
    lastSpan = value;
  }
  return value;
}

/** `body` with the value in fieldSpan replaced by `value` (JSON, quotes included). */
export function replaceSpan(body: Buffer, value: Uint8Array): Buffer {
  const { start, end } = fieldSpan;
  const out = Buffer.allocUnsafe(body.length - (end - start) + value.length);
  body.copy(out, 0, 0, start);
  out.set(value, start);
  body.copy(out, start + value.length, end);
  return out;
}
