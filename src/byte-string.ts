// Header values and request targets are read one character per byte (latin1), as HTTP
// defines them: octets. Put into JSON (logs, error bodies, span attributes), whose text is
// UTF-8, such a string shows a client's UTF-8 bytes as their Latin-1 reading (`é` as `Ã©`).

import { isUtf8 } from 'node:buffer';

/**
 * The text a byte string's bytes say: their UTF-8 reading when they are valid UTF-8 (what
 * curl, Python and most clients send), else their Latin-1 one (Node's clients send a
 * string's characters up to U+00FF as single bytes). ASCII, the usual case, is returned as
 * it is, and so is a string with a character past U+00FF, which was not read from bytes.
 */
export function bytesAsText(bytes: string): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes.charCodeAt(i);
    if (c > 0xff) return bytes;
    if (c > 0x7f) ascii = false;
  }
  if (ascii) return bytes;
  const raw = Buffer.from(bytes, 'latin1');
  return isUtf8(raw) ? raw.toString('utf8') : bytes;
}
