// The byte scan that finds a body's top-level `model` (src/json-scan.ts) against
// JSON.parse on generated objects: the same answer for every shape, spacing and escape,
// and a splice that changes that field and nothing else.

import fc from 'fast-check';
import t from 'tap';
import { FieldScan, fieldSpan, JsonKey, replaceSpan, scanTopLevelString, spanString } from '../../src/json-scan.js';

const MODEL = new JsonKey('model');

/** What JSON.parse says the scan must find. */
function expected(text: string): FieldScan {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  if (!Object.hasOwn(parsed, 'model')) return FieldScan.Missing;
  return typeof parsed.model === 'string' ? FieldScan.Found : FieldScan.NotString;
}

const objects = fc.record({
  fields: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('model ', 'Model', 'models', 'mode', 'x\\"model')), fc.jsonValue({ maxDepth: 3 })),
  model: fc.option(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.jsonValue({ maxDepth: 2 })), { nil: undefined }),
  at: fc.nat(),
  indent: fc.constantFrom(0, 1, 2, '\t'),
});

t.test('the scan agrees with JSON.parse', async (t) => {
  fc.assert(
    fc.property(objects, ({ fields, model, at, indent }) => {
      const entries = Object.entries(fields).filter(([k]) => k !== 'model');
      if (model !== undefined) entries.splice(at % (entries.length + 1), 0, ['model', model]);
      const text = JSON.stringify(Object.fromEntries(entries), null, indent);
      const body = Buffer.from(text);
      const scan = scanTopLevelString(body, MODEL);
      if (scan !== expected(text)) return false;
      if (scan !== FieldScan.Found) return true;
      if (spanString(body) !== model) return false;
      const spliced = replaceSpan(body, Buffer.from(JSON.stringify('served:1')));
      const before = JSON.parse(text) as Record<string, unknown>;
      const after = JSON.parse(spliced.toString()) as Record<string, unknown>;
      return after.model === 'served:1' && JSON.stringify({ ...after, model: null }) === JSON.stringify({ ...before, model: null });
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 generated bodies');
});

/** A JSON string (quotes included) with the letters and digits that `escape` picks written as \u escapes. */
function escapeSome(json: string, escape: (at: number) => boolean): string {
  let out = '';
  for (let j = 0; j < json.length; j++) {
    const c = json[j]!;
    if (c === '\\') {
      // An escape already: copied as it is (\uXXXX whole).
      const n = json[j + 1] === 'u' ? 6 : 2;
      out += json.slice(j, j + n);
      j += n - 1;
    } else out += /[A-Za-z0-9]/.test(c) && escape(j) ? '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0') : c;
  }
  return out;
}

t.test('keys spelled with \\u escapes are the same keys, as to JSON.parse', async (t) => {
  fc.assert(
    fc.property(objects, fc.array(fc.boolean(), { minLength: 1 }), fc.boolean(), ({ fields, model, at }, mask, twice) => {
      const entries = Object.entries(fields).filter(([k]) => k !== 'model');
      if (model !== undefined) entries.splice(at % (entries.length + 1), 0, ['model', model]);
      // Another model, spelled differently: the gateway and the server might read either.
      if (twice) entries.splice((at >> 3) % (entries.length + 1), 0, ['model', 'other']);
      const text = '{' + entries.map(([k, v], n) => `${escapeSome(JSON.stringify(k), (j) => mask[(n * 7 + j) % mask.length]!)}:${JSON.stringify(v)}`).join(',') + '}';
      const scan = scanTopLevelString(Buffer.from(text), MODEL);
      if (twice && model !== undefined) return scan === FieldScan.Duplicate;
      const one = twice ? 'other' : model;
      return scan === expected(text) && (scan !== FieldScan.Found || spanString(Buffer.from(text)) === one);
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 generated bodies');
});

t.test('what is not one JSON object with one model', async (t) => {
  const scan = (s: string): FieldScan => scanTopLevelString(Buffer.from(s), MODEL);
  t.equal(scan('{"model":"a","model":"b"}'), FieldScan.Duplicate);
  t.equal(scan('{"messages":[{"role":"user"}'), FieldScan.Invalid, 'cut short before the model');
  t.equal(scan('{"model":"a","messages":['), FieldScan.Found, 'what follows the model is the server\'s to validate');
  t.equal(scan('{"model":"a","messages":[{"content":"model"}],"model":"b"}'), FieldScan.Duplicate, 'the key\'s bytes again: read on, and found twice');
  t.equal(scan('{"model":"a","messages":[{"role":"model"}]}'), FieldScan.Found, 'the bytes again, as a value: read on, found once');
  t.equal(scan('{"model":"a"} {"model":"b"}'), FieldScan.Invalid, 'two documents');
  t.equal(scan('[{"model":"a"}]'), FieldScan.Invalid, 'an array');
  t.equal(scan(''), FieldScan.Invalid);
  t.equal(scan('{"messages":[{"content":"\\"model\\":\\"x\\""}]}'), FieldScan.Missing, 'a key inside a string is not a key');
  t.equal(scan('{"a":{"model":"x"}}'), FieldScan.Missing, 'nor is a nested one');
  t.equal(scan(' {"model" : "a\\\\" } '), FieldScan.Found, 'an escaped backslash before the closing quote');
  t.equal(spanString(Buffer.from(' {"model" : "a\\\\" } ')), 'a\\');
  t.equal(fieldSpan.end - fieldSpan.start, 5);
  t.equal(scan('{"model":"a","mod\\u0065l":"b"}'), FieldScan.Duplicate, 'a second model spelled with an escape');
  t.equal(scan('{"\\u006dodel":"b","messages":[],"model":"a"}'), FieldScan.Duplicate, 'the escaped one first');
  t.equal(scan('{"model":"a","messages":[{"content":"caf\\u00e9"}]}'), FieldScan.Found, 'an escape in a value: read on, found once');
  t.equal(scan('{"mod\\u0065l":"b"}'), FieldScan.Found, 'one model, escaped: found');
  t.equal(spanString(Buffer.from('{"mod\\u0065l":"b"}')), 'b');
  t.equal(scan('{"mode\\n":"b"}'), FieldScan.Missing, 'another escape: another key');
});

t.test('spanString: names of one length one after another, escaped or not', async (t) => {
  // The last name read is kept by its bytes: only the same bytes may give it back.
  const read = (text: string): string => {
    const body = Buffer.from(text);
    t.equal(scanTopLevelString(body, MODEL), FieldScan.Found);
    return spanString(body);
  };
  for (const name of ['up-1', 'up-2', 'up-2', 'pu-2', 'é-1', 'up-1']) t.equal(read(JSON.stringify({ model: name })), name, name);
  t.equal(read('{"model":"\\u0075p-1"}'), 'up-1', 'an escape read after the plain spelling');
  t.equal(read('{"model":"\\u0075p-2"}'), 'up-2', 'and another of the same length');
});
