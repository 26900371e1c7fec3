// Header hygiene in both directions. Hop-by-hop headers (RFC 9110 7.6.1) never cross the
// gateway; the gateway sets Host, X-Forwarded-* and x-request-id itself and owns the
// message framing (Content-Length / Transfer-Encoding) on each side.

import type { ClientRequest, SentHeaders } from './front-end/client.js';
import { connectionTokens, HeaderKind } from './upstream/header-names.js';
import { GENERATED_KEY_PREFIX } from '../policy/index.js';

export { connectionTokens, HeaderKind, kindOfName, sameName, startsWithName } from './upstream/header-names.js';

export interface ClientHead {
  /** The other request headers as `name: value\r\n` lines: as sent (name case kept) on the node front end, re-serialised (name lower case) on uWS. */
  headerLines: string;
  host: string;
  requestId: string;
  forwardedFor: string;
  contentLength: number;
  chunked: boolean;
  bad: string | null;
  /** Kept apart: when they carry a sluice API key they must not reach the upstream. */
  authorization: string;
  xApiKey: string;
  /** Which of the two carry a sluice API key (SluiceKeyIn bits): set by the gateway's key lookup. */
  sluiceKeys: number;
  /** Credentials forwarded as they are, read for the cache key's caller identity. */
  apiKey: string;
  cookie: string;
  /** Read for the response cache; Cache-Control is forwarded too, x-sluice-cache is not. */
  cacheControl: string;
  xSluiceCache: string;
  connection: string;
  /**
   * W3C Trace Context, read whatever case the client wrote the names in (Go's net/http sends
   * `Traceparent`): tracestate lines joined with ','. The lines stay in headerLines; with
   * tracing on the gateway takes them out (withoutTraceContext) and sends its own.
   */
  traceparent: string;
  tracestate: string;
  /** A browser's page or extension (proxy/cors.ts); the line goes upstream too. */
  origin: string;
}

// Scratch state for the one synchronous pass over the headers of the request being handled:
// module-level functions instead of a closure per request.
// The same object serves every request: the handler reads what it needs before returning.
const scratch: ClientHead = {
  headerLines: '', host: '', requestId: '', forwardedFor: '', contentLength: -1, chunked: false, bad: null,
  authorization: '', xApiKey: '', sluiceKeys: 0, apiKey: '', cookie: '', cacheControl: '', xSluiceCache: '', connection: '',
  traceparent: '', tracestate: '', origin: '',
};

// Where keepHeader gets a value it reads: the node front end's head (line k, sliced only
// then: most values are forwarded inside their line and never needed alone), or uWS's
// value as forEach gave it.
let sentHead: SentHeaders | null = null;
let givenValue = '';

function valueAt(k: number): string {
  return sentHead === null ? givenValue : sentHead.value(k);
}

/** Notes what the gateway reads of header line k; false when the line does not go upstream. */
function keepHeader(name: string, k: number): boolean {
  const s = scratch;
  switch (name.length) {
    case 2:
      if (name === 'te') return false;
      break;
    case 4:
      if (name === 'host') {
        s.host = valueAt(k);
        return false;
      }
      break;
    case 6:
      if (name === 'expect') return false; // The front end answers 100-continue itself.
      if (name === 'cookie') s.cookie = s.cookie === '' ? valueAt(k) : `${s.cookie}; ${valueAt(k)}`;
      else if (name === 'origin') s.origin = valueAt(k);
      break;
    case 9:
      if (name === 'x-api-key') {
        s.xApiKey = valueAt(k);
        return false;
      }
      break;
    case 7:
      if (name === 'trailer' || name === 'upgrade') return false;
      if (name === 'api-key') {
        s.apiKey = valueAt(k);
        // A sluice key sent the way Azure's SDKs send theirs: never forwarded, as in the two headers sluice reads keys from.
        if (s.apiKey.startsWith(GENERATED_KEY_PREFIX)) return false;
      }
      break;
    case 10:
      if (name === 'connection') {
        s.connection = valueAt(k);
        return false;
      }
      if (name === 'keep-alive') return false;
      if (name === 'tracestate') s.tracestate = s.tracestate === '' ? valueAt(k) : `${s.tracestate},${valueAt(k)}`;
      break;
    case 11:
      if (name === 'traceparent') s.traceparent = valueAt(k);
      break;
    case 13:
      if (name === 'authorization') {
        s.authorization = valueAt(k);
        return false;
      }
      if (name === 'cache-control') s.cacheControl = valueAt(k);
      break;
    case 12:
      if (name === 'x-request-id') {
        // Of two, the first is the id, as nginx's $http_x_request_id (and the others are dropped).
        if (s.requestId !== '') return false;
        const value = valueAt(k);
        // An empty one is no id: sluice makes one. A longer one than this would bloat every log line.
        if (value.length <= 200) s.requestId = value;
        else s.bad = 'x-request-id must be at most 200 characters';
        return false;
      }
      break;
    case 14:
      if (name === 'x-sluice-cache') {
        s.xSluiceCache = valueAt(k);
        return false;
      }
      if (name === 'content-length') {
        // The node front end's parser has read and checked it (SentHeaders.contentLength).
        if (sentHead !== null) return false;
        const value = valueAt(k);
        const n = Number(value);
        if (value === '' || !Number.isSafeInteger(n) || n < 0) s.bad = 'invalid content-length';
        else if (s.contentLength !== -1 && s.contentLength !== n) s.bad = 'conflicting content-length headers';
        else s.contentLength = n;
        return false;
      }
      break;
    case 15:
      if (name === 'x-forwarded-for') {
        s.forwardedFor = s.forwardedFor === '' ? valueAt(k) : `${s.forwardedFor}, ${valueAt(k)}`;
        return false;
      }
      break;
    case 16:
      if (name === 'x-forwarded-host') return false;
      break;
    case 17:
      if (name === 'transfer-encoding') {
        if (sentHead !== null) return false;
        const value = valueAt(k);
        if (value.toLowerCase() === 'chunked') s.chunked = true;
        else s.bad = `unsupported transfer-encoding '${value}'`;
        return false;
      }
      if (name === 'x-forwarded-proto') return false;
      break;
  }
  return !(name.length > 6 && name.startsWith('proxy-'));
}

/** uWS: each kept line re-serialised. */
function collectHeader(name: string, value: string): void {
  givenValue = value;
  if (keepHeader(name, -1)) scratch.headerLines += `${name}: ${value}\r\n`;
}

/** The node front end: kept lines as sent, a run of consecutive ones as one slice of the head. */
function collectSentHeaders(sent: SentHeaders): void {
  const { names, count, text } = sent;
  sentHead = sent;
  scratch.contentLength = sent.contentLength;
  scratch.chunked = sent.chunked;
  let lines = '';
  let run = -1;
  for (let k = 0; k < count; k++) {
    if (keepHeader(names[k]!, k)) {
      if (run === -1) run = sent.lineStart(k);
    } else if (run !== -1) {
      lines += text.slice(run, sent.lineStart(k));
      run = -1;
    }
  }
  if (run !== -1) lines += text.slice(run, sent.lineStart(count));
  sentHead = null;
  scratch.headerLines = lines;
}

/**
 * Reads the client's request headers once (the request dies with the handler). The
 * result is shared scratch, valid until the next call: read it, do not keep it.
 */
export function readClientHead(req: ClientRequest): ClientHead {
  const head = scratch;
  head.headerLines = '';
  head.host = '';
  head.requestId = '';
  head.forwardedFor = '';
  head.contentLength = -1;
  head.chunked = false;
  head.bad = null;
  head.authorization = '';
  head.xApiKey = '';
  head.sluiceKeys = 0;
  head.apiKey = '';
  head.cookie = '';
  head.cacheControl = '';
  head.xSluiceCache = '';
  head.connection = '';
  head.traceparent = '';
  head.tracestate = '';
  head.origin = '';
  const sent = req.sentHeaders?.();
  if (sent === undefined) req.forEach(collectHeader);
  else collectSentHeaders(sent);
  givenValue = '';
  // Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1); rare, so the lines
  // already collected are filtered afterwards, only when it names any.
  if (head.connection !== '') {
    const extra = connectionTokens(head.connection);
    if (extra !== null) head.headerLines = withoutHeaders(head.headerLines, extra);
  }
  // Both framings at once is how request smuggling starts: refuse it (RFC 9112 6.1).
  if (head.chunked && head.contentLength !== -1) head.bad = 'both content-length and transfer-encoding';
  return head;
}

const TRACE_CONTEXT = ['traceparent', 'tracestate'];

/** Takes the client's Trace Context lines out of the forwarded ones: the upstream gets the gateway's span as its parent instead. */
export function withoutTraceContext(head: ClientHead): void {
  if (head.traceparent !== '' || head.tracestate !== '') head.headerLines = withoutHeaders(head.headerLines, TRACE_CONTEXT);
}

/**
 * `lines` without the lines of the headers `names` (lower case): the client's header lines,
 * or a request head's rest (its framing line and the empty line that ends it are kept).
 */
export function withoutHeaders(lines: string, names: readonly string[]): string {
  let out = '';
  let at = 0;
  while (at < lines.length) {
    const end = lines.indexOf('\r\n', at);
    const lineEnd = end === -1 ? lines.length : end;
    const colon = lines.indexOf(':', at);
    if (colon === -1 || colon > lineEnd || !names.includes(lines.slice(at, colon).toLowerCase())) out += lines.slice(at, end === -1 ? lineEnd : end + 2);
    at = lineEnd + 2;
  }
  return out;
}

/**
 * Response headers from upstream that the client must not see: hop-by-hop ones, the
 * framing (uWS writes its own), Date (uWS writes its own), and the upstream's x-request-id
 * and x-sluice-* (the gateway's own are authoritative, and sent once: a server's
 * x-sluice-version came first and was the one clients read). Indexed by HeaderKind.
 */
const DROPPED_RESPONSE_KINDS: readonly boolean[] = (() => {
  const dropped: boolean[] = [];
  for (const kind of [
    HeaderKind.ContentLength, HeaderKind.TransferEncoding, HeaderKind.Connection, HeaderKind.KeepAlive, HeaderKind.Te,
    HeaderKind.Trailer, HeaderKind.Upgrade, HeaderKind.Date, HeaderKind.RequestId, HeaderKind.SluiceOwn, HeaderKind.TransportSecurity, HeaderKind.Proxy,
  ]) dropped[kind] = true;
  for (let k = 0; k <= HeaderKind.Proxy; k++) dropped[k] ??= false;
  return dropped;
})();

export function isDroppedResponseKind(kind: HeaderKind): boolean {
  return DROPPED_RESPONSE_KINDS[kind]!;
}

/**
 * The value of request header `name` (lower case) among the forwarded lines (whose names
 * may not be), '' when absent; repeated fields are joined with ', '. For the cache's
 * `vary` headers and sticky routing.
 */
export function forwardedHeader(lines: string, name: string): string {
  let out = '';
  let at = 0;
  while (at < lines.length) {
    const end = lines.indexOf('\r\n', at);
    if (end === -1) break;
    if (end - at > name.length && lines.charCodeAt(at + name.length) === 0x3a && lines.slice(at, at + name.length).toLowerCase() === name) {
      const value = lines.slice(at + name.length + 1, end).trim();
      out = out === '' ? value : `${out}, ${value}`;
    }
    at = end + 2;
  }
  return out;
}

/**
 * The client's header lines for a deployment whose upstream takes the gateway's own
 * credential (`line`, header `name`): the client's Authorization and x-api-key stay behind,
 * and so does its own header of that name.
 */
export function withCredential(head: ClientHead, name: string, line: string): string {
  const lines = name === 'authorization' || name === 'x-api-key' ? head.headerLines : withoutHeaders(head.headerLines, [name]);
  return lines + line;
}

export const enum SluiceKeyIn {
  Authorization = 1,
  XApiKey = 2,
}

/** The credential headers for the upstream: those that do not carry a sluice API key. */
export function credentialLines(head: ClientHead): string {
  const sluice = head.sluiceKeys;
  const authorization = head.authorization === '' || (sluice & SluiceKeyIn.Authorization) !== 0 ? '' : `authorization: ${head.authorization}\r\n`;
  const xApiKey = head.xApiKey === '' || (sluice & SluiceKeyIn.XApiKey) !== 0 ? '' : `x-api-key: ${head.xApiKey}\r\n`;
  return authorization === '' ? xApiKey : authorization + xApiKey;
}
