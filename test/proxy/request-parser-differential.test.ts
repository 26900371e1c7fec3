// Differential tests of the client-facing request parser (src/proxy/front-end/request-parser.ts)
// against Node's own llhttp in REQUEST mode: the HTTPParser binding node:http's server
// drives, set up as the server sets it up (strict, maxHeaderSize 16 KiB like sluice's
// default), fed the bytes then EOF (llhttpRequests in test/helpers/llhttp-reference.ts).
// The sluice side is the RequestParser fed the same bytes whole and cut at every byte
// (the outcome must not depend on the cut).
//
// The rule: where llhttp rejects a request (an error, or EOF, before its first request is
// complete), sluice rejects it too; where llhttp accepts, sluice yields the same method,
// target, header lines (names lower-cased, values trimmed of SP/HTAB), body bytes, and the
// same framing: the request ends at the same byte for llhttp (checked by appending a second
// request after where sluice ended: llhttp must read it cleanly).
//
// Where sluice is deliberately STRICTER than llhttp (rejects what llhttp accepts):
//   S1  versions other than HTTP/1.0 and 1.1 (llhttp takes 0.9, 2.0...): 505, RFC 9112 2.3
//       (a server may refuse a major version it does not support; 1.2 has no meaning);
//   S2  a bare LF or CR before the request line (RFC 9112 2.2 ignores empty lines, CRLF ones;
//       a bare LF is only a MAY);
//   S3  request targets outside RFC 9112 3.2's forms: a fragment ('#'), '*' with a method
//       other than OPTIONS, a target neither origin-form nor http(s) absolute-form (the
//       authority-form is for CONNECT), userinfo in an absolute-form target (RFC 9110 4.2.4);
//   S4  CONNECT: 501, sluice has no tunnels (llhttp hands the connection over);
//   S5  more than one Host line (RFC 9112 3.2: MUST answer 400);
//   S6  Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1: the framing is faulty, and
//       the connection must close), or with an empty list element (",chunked"): refused
//       rather than read one way of two; codings other than chunked ("gzip, chunked"):
//       501, sluice decodes none (RFC 9112 6.1 SHOULD);
//   S7  a chunk size above 2^53/16, a Content-Length of more than 15 digits;
//   S8  chunk extensions outside RFC 9112 7.1.1's grammar that llhttp lets through (an empty
//       name or value);
//   S9  the head bound counted in whole bytes (request line, header lines, their CRLFs,
//       empty lines before) where Node counts fewer bytes; trailers count with the head;
//   S10 more than one SP between the parts of the request line (RFC 9112 3: exactly one SP;
//       llhttp skips extra spaces).
// Where sluice is deliberately LOOSER (accepts what llhttp rejects), framing unambiguous:
//   L1  any token as method (RFC 9110 9.1: methods are extensible and case-sensitive; llhttp
//       knows a fixed list): the gateway answers an unknown method itself (405/501);
//   L2  identical Content-Length values repeated, on lines or in a list (RFC 9110 8.6);
//   L3  BWS around ';' and '=' in chunk extensions (RFC 9112 7.1.1);
//   L4  a HTAB after the Content-Length or Transfer-Encoding value: it is OWS, trimmed
//       like any value's (RFC 9110 5.5), so "5\t" is 5 and "chunked\t" is chunked;
//   L5  (not visible against llhttp, which does not check it) a missing Host: RFC 9112 3.2
//       says an HTTP/1.1 server MUST answer 400, and node:http does by default; sluice routes
//       by path and leaves it to the handler.
// Disagreements outside these lists fail the test. Two more differences, not accept/reject
// ones: sluice ignores Upgrade (RFC 9110 7.8 lets a server) and reads what follows as the
// next request, where llhttp stops after an upgrade request (kept out of the generated
// corpus); and an HTTP/1.0 request whose Connection lists both keep-alive and close is not
// kept alive (close wins, as in HTTP/1.1), where llhttp keeps it.
//
// The property runs use a fixed seed, logged; replay or widen with
// FC_SEED=<n> FC_RUNS=<n> npx tap test/proxy/request-parser-differential.test.ts

import t from 'tap';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { RequestParseError, RequestParser, type RequestHead, type RequestSink } from '../../src/proxy/front-end/request-parser.js';
import { llhttpRequests, type LlhttpRequests } from '../helpers/llhttp-reference.js';

const SEED = Number(process.env['FC_SEED'] ?? 20261206);
const RUNS = Number(process.env['FC_RUNS'] ?? 3000);

type Tag = 'S1' | 'S2' | 'S3' | 'S4' | 'S5' | 'S6' | 'S7' | 'S8' | 'S9' | 'S10' | 'L1' | 'L2' | 'L3' | 'L4';
const stricter = (tag: Tag): boolean => tag.startsWith('S');

// ---------------------------------------------------------------------------------------
// The sluice side.

interface Outcome {
  complete: boolean;
  method: string;
  /** The target rebuilt from url, query and authority as far as they tell it. */
  url: string;
  query: string | null;
  authority: string;
  headers: string[];
  body: string;
  keepAlive: boolean;
  /** Bytes the request took. */
  consumed: number;
  error: string | null;
}

class Recorder implements RequestSink {
  out: Outcome = fresh();
  #raw = '';
  start(raw: string): void {
    this.out = fresh();
    this.#raw = raw;
  }
  onRequestHead(h: RequestHead): void {
    const o = this.out;
    o.method = h.method;
    o.url = h.url;
    o.authority = h.authority;
    // query '' is both "no '?'" and "an empty query": the raw line tells which.
    const raw = this.#raw.replace(/^(\r\n)+/, '');
    const line = raw.slice(0, raw.indexOf('\r\n'));
    o.query = h.query !== '' || line.split(' ')[1]?.includes('?') ? h.query : null;
    for (let i = 0; i < h.count; i++) o.headers.push(h.names[i]!, h.value(i));
    o.keepAlive = h.keepAlive;
  }
  onRequestBody(chunk: Buffer): boolean {
    this.out.body += chunk.toString('latin1');
    return true;
  }
  onRequestComplete(): void {
    this.out.complete = true;
  }
}

function fresh(): Outcome {
  return { complete: false, method: '', url: '', query: null, authority: '', headers: [], body: '', keepAlive: false, consumed: 0, error: null };
}

/** Feeds `pieces` to a fresh parser, stopping at the first complete request or error. */
function sluiceOnce(raw: Buffer, pieces: Buffer[]): Outcome {
  const rec = new Recorder();
  rec.start(raw.toString('latin1'));
  const parser = new RequestParser(rec);
  let fed = 0;
  try {
    for (const p of pieces) {
      const at = parser.execute(p, 0, p.length);
      if (parser.done) {
        rec.out.consumed = fed + at;
        return rec.out;
      }
      fed += p.length;
    }
    rec.out.error = 'EOF before the request ended';
  } catch (err) {
    rec.out.error = err instanceof RequestParseError ? `${err.status} ${err.message}` : `not a RequestParseError: ${String(err)}`;
  }
  return rec.out;
}

/** The outcome of `raw`, the same at every cut; or a string telling the first difference. */
function sluice(raw: Buffer, allSplits: boolean): Outcome | string {
  const whole = sluiceOnce(raw, [raw]);
  const step = allSplits ? 1 : Math.max(1, Math.floor(raw.length / 24));
  const ways: Buffer[][] = [];
  for (let i = 1; i < raw.length; i += step) ways.push([Buffer.from(raw.subarray(0, i)), Buffer.from(raw.subarray(i))]);
  if (allSplits || raw.length < 400) ways.push([...raw].map((b) => Buffer.from([b])));
  for (const pieces of ways) {
    const got = sluiceOnce(raw, pieces);
    const a = { ...got, error: got.error === null ? null : got.error.split(' ')[0] };
    const b = { ...whole, error: whole.error === null ? null : whole.error.split(' ')[0] };
    if (JSON.stringify(a) !== JSON.stringify(b)) return `cut ${pieces.map((p) => p.length).slice(0, 3)}: ${JSON.stringify(got)} vs whole ${JSON.stringify(whole)}`;
  }
  return whole;
}

// ---------------------------------------------------------------------------------------
// The comparison.

const SENTINEL = Buffer.from('GET /sentinel HTTP/1.1\r\nHost: s\r\n\r\n');
const trim = (v: string): string => v.replace(/^[ \t]+|[ \t]+$/g, '');

/** llhttp accepts: its first request is complete (nothing after it counts: a lone request is sent). */
const refAccepts = (ref: LlhttpRequests): boolean => ref.requests[0]?.complete === true;

function disagreement(raw: Buffer, tags: readonly Tag[], ref: LlhttpRequests, got: Outcome): string | null {
  const accepts = refAccepts(ref);
  if (!accepts) {
    if (got.complete && !tags.some((x) => !stricter(x))) return 'sluice accepts a request llhttp rejects';
    return null;
  }
  if (!got.complete) return tags.some(stricter) ? null : `sluice rejects a request llhttp accepts (${got.error})`;
  const r = ref.requests[0]!;
  if (got.method !== r.method) return `method ${got.method} vs llhttp ${r.method}`;
  const q = r.url.indexOf('?');
  const path = q === -1 ? r.url : r.url.slice(0, q);
  const query = q === -1 ? null : r.url.slice(q + 1);
  if (got.authority === '') {
    if (got.url !== path || got.query !== query) return `target ${got.url} ? ${got.query} vs llhttp ${r.url}`;
  } else if (!path.toLowerCase().startsWith('http') || !path.includes(`//${got.authority}`) || !path.endsWith(got.url === '/' && !path.endsWith('/') ? '' : got.url) || got.query !== query) {
    return `absolute target ${got.authority} ${got.url} ? ${got.query} vs llhttp ${r.url}`;
  }
  const headers = r.headers.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : trim(v)));
  if (JSON.stringify(got.headers) !== JSON.stringify(headers)) return `headers ${JSON.stringify(got.headers)} vs llhttp ${JSON.stringify(headers)}`;
  if (got.body !== r.body) return `body ${JSON.stringify(got.body)} vs llhttp ${JSON.stringify(r.body)}`;
  // Sluice may close where llhttp keeps alive only as documented: close wins in HTTP/1.0 too.
  if (got.keepAlive !== r.keepAlive && (got.keepAlive || !/\r\nconnection:[^\r]*close/i.test(raw.toString('latin1')))) return `keep-alive ${got.keepAlive} vs llhttp ${r.keepAlive}`;
  if (got.keepAlive && !r.upgrade) {
    const next = llhttpRequests(Buffer.concat([raw.subarray(0, got.consumed), SENTINEL]));
    if (next.error !== null || next.requests.length !== 2 || !next.requests[1]!.complete || next.requests[1]!.url !== '/sentinel' || next.requests[0]!.body !== got.body) {
      return `llhttp does not end the request where sluice does (byte ${got.consumed}): ${JSON.stringify(next)}`;
    }
  }
  return null;
}

function check(raw: Buffer, tags: readonly Tag[], allSplits = true): { failure: string | null; ref: LlhttpRequests; got: Outcome | null } {
  const ref = llhttpRequests(raw);
  const got = sluice(raw, allSplits);
  const show = `\n  raw: ${JSON.stringify(raw.toString('latin1'))}\n  llhttp: ${JSON.stringify(ref)}`;
  if (typeof got === 'string') return { failure: `sluice depends on the cut: ${got}${show}`, ref, got: null };
  const d = disagreement(raw, tags, ref, got);
  return { failure: d === null ? null : `${d}${show}\n  sluice: ${JSON.stringify(got)}`, ref, got };
}

// ---------------------------------------------------------------------------------------
// Hand-written cases: the classic smuggling patterns first.

interface Named {
  name: string;
  raw: string;
  sluice: 'accept' | 'reject';
  tags?: Tag[];
}

const P = 'POST / HTTP/1.1\r\nHost: h\r\n';
const named: Named[] = [
  { name: 'CL.TE', raw: `${P}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX`, sluice: 'reject' },
  { name: 'TE.CL', raw: `${P}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE.TE: "chunked " (trailing space is OWS)', raw: `${P}Transfer-Encoding: chunked \r\n\r\n1\r\nx\r\n0\r\n\r\n`, sluice: 'accept' },
  { name: 'TE.TE: xchunked', raw: `${P}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE.TE: "Transfer-Encoding : chunked"', raw: `${P}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE.TE: chunked then a second TE line', raw: `${P}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE.TE: chunked twice', raw: `${P}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE.TE: a tab before the value', raw: `${P}Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n`, sluice: 'accept' },
  { name: 'TE.TE: a tab after the value (L4)', raw: `${P}Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n`, sluice: 'accept', tags: ['L4'] },
  { name: 'TE.TE: obs-fold', raw: `${P}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE.TE: a leading empty element (S6)', raw: `${P}Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n`, sluice: 'reject', tags: ['S6'] },
  { name: 'TE.TE: a trailing empty element', raw: `${P}Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE: gzip, chunked (S6, 501)', raw: `${P}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, sluice: 'reject', tags: ['S6'] },
  { name: 'TE: chunked, gzip', raw: `${P}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'TE in HTTP/1.0 (S6)', raw: 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', sluice: 'reject', tags: ['S6'] },
  { name: 'TE: CHUNKED', raw: `${P}Transfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, sluice: 'accept' },
  { name: 'duplicate CL, differing', raw: `${P}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`, sluice: 'reject' },
  { name: 'duplicate CL, identical (L2)', raw: `${P}Content-Length: 2\r\nContent-Length: 2\r\n\r\nab`, sluice: 'accept', tags: ['L2'] },
  { name: 'CL list "2, 2" (L2)', raw: `${P}Content-Length: 2, 2\r\n\r\nab`, sluice: 'accept', tags: ['L2'] },
  { name: 'CL list "2, 3"', raw: `${P}Content-Length: 2, 3\r\n\r\nabc`, sluice: 'reject' },
  { name: 'CL with a plus sign', raw: `${P}Content-Length: +2\r\n\r\nab`, sluice: 'reject' },
  { name: 'CL negative', raw: `${P}Content-Length: -2\r\n\r\nab`, sluice: 'reject' },
  { name: 'CL with a space inside', raw: `${P}Content-Length: 1 2\r\n\r\n${'x'.repeat(12)}`, sluice: 'reject' },
  { name: 'CL with spaces around', raw: `${P}Content-Length:  2  \r\n\r\nab`, sluice: 'accept' },
  { name: 'CL with a tab after (L4)', raw: `${P}Content-Length: 2\t\r\n\r\nab`, sluice: 'accept', tags: ['L4'] },
  { name: 'CL hex', raw: `${P}Content-Length: 0x2\r\n\r\nab`, sluice: 'reject' },
  { name: 'CL of 16 digits (S7)', raw: `${P}Content-Length: 0000000000000002\r\n\r\nab`, sluice: 'reject', tags: ['S7'] },
  { name: 'CL overflowing', raw: `${P}Content-Length: 99999999999999999999\r\n\r\nab`, sluice: 'reject' },
  { name: 'CL empty', raw: `${P}Content-Length:\r\n\r\n`, sluice: 'reject' },
  { name: 'chunk size with 0x', raw: `${P}Transfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'chunk size overflowing 64 bits', raw: `${P}Transfer-Encoding: chunked\r\n\r\n10000000000000002\r\nab\r\n0\r\n\r\n`, sluice: 'reject' },
  // S7 for chunk sizes is not visible here: no test sends 2^53 bytes, and llhttp fails at EOF.
  { name: 'chunk size above 2^53/16', raw: `${P}Transfer-Encoding: chunked\r\n\r\n20000000000000\r\nab`, sluice: 'reject' },
  { name: 'chunk size with leading zeros', raw: `${P}Transfer-Encoding: chunked\r\n\r\n0002\r\nab\r\n0\r\n\r\n`, sluice: 'accept' },
  { name: 'chunk size with a space before the CRLF', raw: `${P}Transfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'chunk extension with BWS (L3)', raw: `${P}Transfer-Encoding: chunked\r\n\r\n2 ; a = b\r\nab\r\n0\r\n\r\n`, sluice: 'accept', tags: ['L3'] },
  { name: 'chunk extension empty value (S8)', raw: `${P}Transfer-Encoding: chunked\r\n\r\n2;a=\r\nab\r\n0\r\n\r\n`, sluice: 'reject', tags: ['S8'] },
  { name: 'chunk extensions, quoted', raw: `${P}Transfer-Encoding: chunked\r\n\r\n2;a="b;c\\"d";e\r\nab\r\n0;z=1\r\n\r\n`, sluice: 'accept' },
  { name: 'chunk data not followed by CRLF', raw: `${P}Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n`, sluice: 'reject' },
  { name: 'trailers', raw: `${P}Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Sum: 1\r\nX-B:\t2 \r\n\r\n`, sluice: 'accept' },
  { name: 'Content-Length in the trailers', raw: `${P}Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n`, sluice: 'reject' },
  { name: 'LF-only line endings', raw: 'GET / HTTP/1.1\nHost: h\n\n', sluice: 'reject' },
  { name: 'LF-only in one header line', raw: 'GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n', sluice: 'reject' },
  { name: 'LF-only at the head end', raw: 'GET / HTTP/1.1\r\nHost: h\r\n\n', sluice: 'reject' },
  { name: 'bare CR in a value', raw: 'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n', sluice: 'reject' },
  { name: 'NUL in a header value', raw: 'GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n', sluice: 'reject' },
  { name: 'NUL in a header name', raw: 'GET / HTTP/1.1\r\nX\x00: a\r\n\r\n', sluice: 'reject' },
  { name: 'DEL in a header value', raw: 'GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n', sluice: 'reject' },
  { name: 'obs-text in a header value', raw: 'GET / HTTP/1.1\r\nX: \xe9\xff\r\n\r\n', sluice: 'accept' },
  { name: 'obs-fold', raw: 'GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n', sluice: 'reject' },
  { name: 'space before the colon', raw: 'GET / HTTP/1.1\r\nX : a\r\n\r\n', sluice: 'reject' },
  { name: 'empty header name', raw: 'GET / HTTP/1.1\r\n: a\r\n\r\n', sluice: 'reject' },
  { name: 'two Host lines (S5)', raw: 'GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n', sluice: 'reject', tags: ['S5'] },
  { name: 'no Host', raw: 'GET / HTTP/1.1\r\n\r\n', sluice: 'accept' },
  { name: 'HTTP/2.0 (S1)', raw: 'GET / HTTP/2.0\r\n\r\n', sluice: 'reject', tags: ['S1'] },
  { name: 'HTTP/0.9 (S1)', raw: 'GET / HTTP/0.9\r\n\r\n', sluice: 'reject', tags: ['S1'] },
  { name: 'HTTP/1.2', raw: 'GET / HTTP/1.2\r\n\r\n', sluice: 'reject' },
  { name: 'HTTP/1.0', raw: 'GET /x HTTP/1.0\r\n\r\n', sluice: 'accept' },
  { name: 'HTTP/1.0 keep-alive', raw: 'GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', sluice: 'accept' },
  { name: 'Connection: close', raw: 'GET /x HTTP/1.1\r\nConnection: close\r\n\r\n', sluice: 'accept' },
  { name: 'two spaces after the method (S10)', raw: 'GET  / HTTP/1.1\r\n\r\n', sluice: 'reject', tags: ['S10'] },
  { name: 'two spaces before the version (S10)', raw: 'GET /  HTTP/1.1\r\n\r\n', sluice: 'reject', tags: ['S10'] },
  { name: 'a tab in the request line', raw: 'GET\t/ HTTP/1.1\r\n\r\n', sluice: 'reject' },
  { name: 'lower-case method (L1)', raw: 'get / HTTP/1.1\r\n\r\n', sluice: 'accept', tags: ['L1'] },
  { name: 'unknown method (L1)', raw: 'FOO / HTTP/1.1\r\n\r\n', sluice: 'accept', tags: ['L1'] },
  { name: 'CONNECT (S4)', raw: 'CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n', sluice: 'reject', tags: ['S4'] },
  { name: 'a fragment (S3)', raw: 'GET /a#b HTTP/1.1\r\n\r\n', sluice: 'reject', tags: ['S3'] },
  { name: 'GET * (S3)', raw: 'GET * HTTP/1.1\r\n\r\n', sluice: 'reject', tags: ['S3'] },
  { name: 'OPTIONS *', raw: 'OPTIONS * HTTP/1.1\r\n\r\n', sluice: 'accept' },
  { name: 'absolute-form', raw: 'GET http://h:1/p?q=1 HTTP/1.1\r\nHost: h:1\r\n\r\n', sluice: 'accept' },
  { name: 'a query with ? inside', raw: 'GET /p?a?b HTTP/1.1\r\n\r\n', sluice: 'accept' },
  { name: 'an empty query', raw: 'GET /p? HTTP/1.1\r\n\r\n', sluice: 'accept' },
  { name: 'a relative target', raw: 'GET p HTTP/1.1\r\n\r\n', sluice: 'reject' },
  { name: 'a NUL in the target', raw: 'GET /\x00 HTTP/1.1\r\n\r\n', sluice: 'reject' },
  { name: 'obs-text in the target', raw: 'GET /\xe9 HTTP/1.1\r\n\r\n', sluice: 'reject' },
  { name: 'an empty line before (CRLF)', raw: '\r\nGET / HTTP/1.1\r\n\r\n', sluice: 'accept' },
  { name: 'an LF before (S2)', raw: '\nGET / HTTP/1.1\r\n\r\n', sluice: 'reject', tags: ['S2'] },
  { name: 'a body after a GET without framing is the next request', raw: 'GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n', sluice: 'accept' },
  { name: 'Upgrade is ignored', raw: 'GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n', sluice: 'accept' },
  { name: 'EOF in the body', raw: `${P}Content-Length: 5\r\n\r\nab`, sluice: 'reject' },
  { name: 'EOF in the head', raw: 'GET / HTTP/1.1\r\nX: y\r\n', sluice: 'reject' },
  { name: 'a 20 KiB header line', raw: `GET / HTTP/1.1\r\nX: ${'a'.repeat(20 * 1024)}\r\n\r\n`, sluice: 'reject' },
  { name: 'a head just under 16 KiB', raw: `GET / HTTP/1.1\r\nX: ${'a'.repeat(16 * 1024 - 100)}\r\n\r\n`, sluice: 'accept' },
  { name: '120 header lines', raw: `GET / HTTP/1.1\r\n${Array.from({ length: 120 }, (_, i) => `X-${i}: ${i}\r\n`).join('')}\r\n`, sluice: 'reject', tags: ['S9'] },
];

t.test('hand-written cases (smuggling patterns first), llhttp vs sluice at every cut', async (t) => {
  for (const c of named) {
    const raw = Buffer.from(c.raw, 'latin1');
    const { failure, ref, got } = check(raw, c.tags ?? [], raw.length < 2000);
    if (failure !== null) t.fail(`${c.name}: ${failure}`);
    else t.pass(c.name);
    if (got === null) continue;
    t.equal(got.complete ? 'accept' : 'reject', c.sluice, `${c.name}: sluice ${c.sluice}s${got.error === null ? '' : ` (${got.error})`}`);
    const refOk = refAccepts(ref);
    for (const tag of c.tags ?? []) {
      // A documented difference must still be one (or the list above is stale).
      if (stricter(tag)) t.ok(refOk && !got.complete, `${c.name}: ${tag} (llhttp ${ref.error ?? 'accepts'})`);
      else t.ok(!refOk && got.complete, `${c.name}: ${tag} (llhttp ${ref.error ?? 'accepts'})`);
    }
    if (c.tags === undefined) t.equal(refOk, got.complete, `${c.name}: llhttp agrees (${ref.error ?? 'accepts'})`);
  }
});

// ---------------------------------------------------------------------------------------
// The reference itself: the binding, driven as above, reads requests as a real node:http
// server does over a loopback socket (same accept/reject, method, url, headers, body).

t.test('the llhttp binding reference agrees with a real node:http server', async (t) => {
  const server = createServer({ requireHostHeader: false });
  type Seen = { method: string; url: string; headers: string[]; body: string } | { error: string };
  const waiting = new Map<number, (seen: Seen) => void>();
  const portOf = (req: IncomingMessage | { remotePort?: number }): number => ('socket' in req ? req.socket.remotePort : req.remotePort) ?? 0;
  server.on('request', (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('latin1')));
    req.on('end', () => {
      waiting.get(portOf(req))?.({ method: req.method ?? '', url: req.url ?? '', headers: req.rawHeaders, body });
      res.end();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    waiting.get(portOf(socket as unknown as { remotePort?: number }))?.({ error: err.code ?? 'error' });
    socket.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  t.teardown(() => server.close());
  // Complete requests only (no EOF case: the socket stays open while the server answers).
  const cases = named.filter((c) => !c.name.startsWith('EOF') && !c.name.startsWith('CONNECT') && !c.name.startsWith('Upgrade') && !c.name.includes('2^53') && !/20 KiB|16 KiB|120 header/.test(c.name));
  for (const c of cases) {
    const raw = Buffer.from(c.raw, 'latin1');
    const ref = llhttpRequests(raw);
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    const seen = await new Promise<Seen | 'nothing'>((resolve) => {
      waiting.set(socket.localPort!, resolve);
      socket.write(raw);
      setTimeout(() => resolve('nothing'), 1000);
    });
    waiting.delete(socket.localPort!);
    socket.destroy();
    const r = ref.requests[0];
    const want: Seen | 'nothing' = r?.complete ? { method: r.method, url: r.url, headers: r.headers, body: r.body } : ref.error !== null ? { error: ref.error } : 'nothing';
    t.same(seen, want, c.name);
  }
});

// ---------------------------------------------------------------------------------------
// Generated requests: parts know whether llhttp should accept them and which documented
// difference they exercise.

interface Part {
  text: string;
  tags: Tag[];
}
const part = (text: string, tags: Tag[] = []): Part => ({ text, tags });

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const VALUE_CHARS = [...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), '\t', '\x80', '\xe9', '\xff'];
const SPECIAL = /^(content-length|transfer-encoding|connection|host|upgrade|expect)$/i;

const arbToken = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 10 });
const arbName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('Content-Type', 'Authorization', 'User-Agent', 'Accept', 'X-Stainless-Lang', 'accept-encoding', "!#$%&'*+-.^_`|~", 'x_under') },
  { weight: 2, arbitrary: arbToken.filter((n) => !SPECIAL.test(n)) },
);
const arbValue = fc.string({ unit: fc.constantFrom(...VALUE_CHARS), maxLength: 14 });
const arbBad = fc.constantFrom('\x00', '\x01', '\x0b', '\x1f', '\x7f', '\r', '\n', ' ', '\t', '(', ':', '"');

const arbHeaderLine: fc.Arbitrary<Part> = fc.oneof(
  { weight: 20, arbitrary: fc.tuple(arbName, fc.constantFrom(':', ': ', ':\t', ':  '), arbValue).map(([n, c, v]) => part(`${n}${c}${v}\r\n`)) },
  { weight: 2, arbitrary: fc.constantFrom('close', 'keep-alive', 'Keep-Alive', 'x, close', 'closed').map((v) => part(`Connection: ${v}\r\n`)) },
  { weight: 1, arbitrary: fc.constantFrom(part('Host: h\r\nHost: h\r\n', ['S5']), part('Expect: 100-continue\r\n')) },
  // A bad byte anywhere in a line: llhttp and sluice must both refuse (or agree).
  { weight: 2, arbitrary: fc.tuple(arbName, arbValue, arbBad, fc.nat()).map(([n, v, b, i]) => { const line = `${n}: ${v}`; const k = i % (line.length + 1); return part(`${line.slice(0, k)}${b}${line.slice(k)}\r\n`); }) },
  { weight: 1, arbitrary: fc.constantFrom(part('X: a\r\n folded\r\n'), part('X : a\r\n'), part(': a\r\n'), part('X: a\n'), part('NoColon\r\n')) },
);

interface Framing {
  headers: Part[];
  body: Part[];
}

const arbBody = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('latin1'));
const arbLengthFraming: fc.Arbitrary<Framing> = fc.tuple(arbBody, fc.constantFrom(
  (n: number) => [part(`Content-Length: ${n}\r\n`)],
  (n: number) => [part(`content-length:${n}  \r\n`)],
  (n: number) => [part(`Content-Length: 00${n}\r\n`)],
  (n: number) => [part(`Content-Length: ${n}\r\n`, ['L2']), part(`Content-Length: ${n}\r\n`, ['L2'])],
  (n: number) => [part(`Content-Length: ${n}, ${n}\r\n`, ['L2'])],
  (n: number) => [part(`Content-Length: ${n}\t\r\n`, ['L4'])],
  (n: number) => [part(`Content-Length: ${n}\r\n`), part(`Content-Length: ${n + 1}\r\n`)],
  (n: number) => [part(`Content-Length: +${n}\r\n`)],
  (n: number) => [part(`Content-Length: ${n}\r\nTransfer-Encoding: chunked\r\n`)],
  (n: number) => [part(`Content-Length: ${String(n).padStart(16, '0')}\r\n`, ['S7'])],
), fc.integer({ min: -2, max: 2 })).map(([body, headers, skew]) => ({
  headers: headers(body.length),
  body: [part(skew < 0 ? body.slice(0, Math.max(0, body.length + skew)) : body + 'x'.repeat(skew))],
}));

const arbExt = fc.oneof(
  { weight: 8, arbitrary: fc.constant(part('')) },
  { weight: 3, arbitrary: fc.constantFrom(';a', ';a=b', ';a="q s;t"', ';a="e\\"q"', ';a=b;c').map((e) => part(e)) },
  { weight: 1, arbitrary: fc.constantFrom(' ;a', '; a', ';a = b').map((e) => part(e, ['L3'])) },
  { weight: 1, arbitrary: fc.constantFrom(';;a', ';=a', ';a=').map((e) => part(e, ['S8'])) },
  { weight: 1, arbitrary: fc.constantFrom(';', ';a@b', ';a\x00', ';a="x', ' ').map((e) => part(e)) },
);
const arbChunk = fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 20 }), arbExt, fc.oneof({ weight: 10, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }), fc.nat(2))
  .map(([b, ext, crlf, zeros]) => {
    const data = Buffer.from(b).toString('latin1');
    return [part('0'.repeat(zeros) + data.length.toString(16)), ext, part('\r\n'), part(data), part(crlf ? '\r\n' : '\n')];
  });
const arbChunkedFraming: fc.Arbitrary<Framing> = fc.tuple(
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('chunked', 'Chunked', ' chunked ', 'CHUNKED').map((v) => [part(`Transfer-Encoding: ${v}\r\n`)]) },
    { weight: 1, arbitrary: fc.constantFrom([part('Transfer-Encoding: chunked\t\r\n', ['L4'])], [part('Transfer-Encoding: ,chunked\r\n', ['S6'])], [part('Transfer-Encoding: gzip, chunked\r\n', ['S6'])]) },
    { weight: 1, arbitrary: fc.constantFrom('xchunked', 'chunked, gzip', 'chunked,', 'gzip', '"chunked"', 'chunked;a=1').map((v) => [part(`Transfer-Encoding: ${v}\r\n`)]) },
  ),
  fc.array(arbChunk, { maxLength: 3 }),
  fc.array(fc.constantFrom(part('X-T: 1\r\n'), part('X-T:\t\xe9 \r\n'), part('X-T: \x00\r\n'), part('Content-Length: 1\r\n')), { maxLength: 2 }),
).map(([te, chunks, trailers]) => ({ headers: [...te], body: [...chunks.flat(), part('0\r\n'), ...trailers, part('\r\n')] }));

const arbFraming = fc.oneof(
  { weight: 4, arbitrary: arbLengthFraming },
  { weight: 4, arbitrary: arbChunkedFraming },
  { weight: 2, arbitrary: fc.constant<Framing>({ headers: [], body: [] }) },
);

const arbCase = fc.record({
  lead: fc.oneof({ weight: 10, arbitrary: fc.constant(part('')) }, { weight: 1, arbitrary: fc.constantFrom(part('\r\n'), part('\n', ['S2'])) }),
  method: fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS').map((m) => part(m)) },
    { weight: 1, arbitrary: fc.constantFrom(part('get', ['L1']), part('FOO', ['L1']), part('G T'), part('')) },
  ),
  target: fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom('/', '/v1/chat/completions', '/a?b=c', '/p?', '/x?y?z', "/!$&'()*+,;=:@-._~%20").map((x) => part(x)) },
    { weight: 1, arbitrary: fc.constantFrom(part('/a#f', ['S3']), part('rel', ['S3']), part('http://h:1/p?q'), part('/\x01'), part('/ /', ['S10']), part('/\xe9')) },
  ),
  version: fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(part('HTTP/1.1'), part('HTTP/1.1'), part('HTTP/1.0')) },
    { weight: 1, arbitrary: fc.constantFrom(part('HTTP/2.0', ['S1']), part('HTTP/1.2'), part('http/1.1'), part('HTTP/1.1 ')) },
  ),
  eol: fc.oneof({ weight: 15, arbitrary: fc.constant(part('\r\n')) }, { weight: 1, arbitrary: fc.constant(part('\n')) }),
  headers: fc.array(arbHeaderLine, { maxLength: 6 }),
  framing: arbFraming,
  at: fc.nat(),
}).map((c) => {
  const headers = [part('Host: h\r\n'), ...c.headers];
  headers.splice(c.at % (headers.length + 1), 0, ...c.framing.headers);
  const parts = [c.lead, c.method, part(' '), c.target, part(' '), c.version, c.eol, ...headers, part('\r\n'), ...c.framing.body];
  const text = parts.map((p) => p.text).join('');
  let tags = [...new Set(parts.flatMap((p) => p.tags))];
  // Transfer-Encoding in HTTP/1.0 (S6) and 'Host' twice: the combination decides.
  if (c.version.text === 'HTTP/1.0' && c.framing.headers.some((h) => /^transfer-encoding/i.test(h.text))) tags = [...tags, 'S6'];
  return { raw: Buffer.from(text, 'latin1'), tags };
});

t.test(`generated requests, llhttp vs sluice (seed ${SEED}, ${RUNS} runs)`, async (t) => {
  t.comment(`fast-check seed ${SEED}; replay: FC_SEED=${SEED} npx tap test/proxy/request-parser-differential.test.ts`);
  const counts = { bothAccept: 0, bothReject: 0, sluiceStricter: 0, sluiceLooser: 0 };
  fc.assert(
    fc.property(arbCase, (c) => {
      const { failure, ref, got } = check(c.raw, c.tags, false);
      if (failure !== null) throw new Error(`${failure}\n  tags: ${c.tags.join(' ')}`);
      const refOk = refAccepts(ref);
      if (refOk && got!.complete) counts.bothAccept++;
      else if (!refOk && !got!.complete) counts.bothReject++;
      else if (refOk) counts.sluiceStricter++;
      else counts.sluiceLooser++;
    }),
    { seed: SEED, numRuns: RUNS },
  );
  t.comment(`outcomes: ${JSON.stringify(counts)}`);
  t.ok(counts.bothAccept >= RUNS / 8, 'a good share of the generated requests are valid (the property is not vacuous)');
  t.ok(counts.bothReject >= RUNS / 8, 'and a good share invalid');
});

t.test(`pipelined valid requests, cut anywhere (seed ${SEED})`, async (t) => {
  let pipelines = 0;
  fc.assert(
    fc.property(fc.array(arbCase, { minLength: 2, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }), (cases, cuts) => {
      const chain = cases.filter((c) => c.tags.length === 0).map((c) => ({ c, got: sluice(c.raw, false) })).filter(({ c, got }) => typeof got !== 'string' && got.complete && got.keepAlive && got.consumed === c.raw.length && refAccepts(llhttpRequests(c.raw)));
      if (chain.length < 2) return;
      pipelines++;
      const all = Buffer.concat(chain.map((x) => x.c.raw));
      const points = [...new Set(cuts.map((x) => x % all.length))].sort((a, b) => a - b);
      const rec = new Recorder();
      const parser = new RequestParser(rec);
      const outs: Outcome[] = [];
      rec.start(chain[0]!.c.raw.toString('latin1'));
      let from = 0;
      for (const to of [...points, all.length]) {
        const piece = Buffer.from(all.subarray(from, to));
        let pos = 0;
        while (pos < piece.length) {
          pos = parser.execute(piece, pos, piece.length);
          if (parser.done) {
            outs.push(rec.out);
            parser.reset();
            rec.start(chain[outs.length]?.c.raw.toString('latin1') ?? '');
          }
        }
        from = to;
      }
      if (outs.length !== chain.length) throw new Error(`${outs.length} of ${chain.length} requests came out of ${JSON.stringify(all.toString('latin1'))} cut at ${points}`);
      outs.forEach((o, k) => {
        const alone = chain[k]!.got as Outcome;
        const a = { ...o, consumed: 0 };
        const b = { ...alone, consumed: 0 };
        if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`request ${k} differs in the pipeline: ${JSON.stringify(o)} vs alone ${JSON.stringify(alone)}`);
      });
    }),
    { seed: SEED + 1, numRuns: Math.ceil(RUNS / 4) },
  );
  t.ok(pipelines > 0, `${pipelines} pipelines of 2 or more keep-alive requests checked`);
});
