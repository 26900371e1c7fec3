import type { HttpResponse } from 'uWebSockets.js';
import { STATUS_LINES } from '../errors/index.js';
import { STATUS_CODES } from 'node:http';

// Indexed by status code (100-999, as the parser admits): one array load per response.
const statusCache: string[] = [];
for (const [k, v] of Object.entries(STATUS_LINES)) statusCache[Number(k)] = v;

/** "200 OK" for uWS's writeStatus, cached so a response does not build the string. */
export function statusLine(status: number): string {
  let line = statusCache[status];
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
    statusCache[status] = line;
  }
  return line;
}

// uWS.js converts a string argument through a malloc'd UTF-8 copy (String::Utf8Value); a
// view of bytes written into one scratch buffer costs neither. It also keeps bytes 0x80-0xFF
// of upstream header values as they arrived (the parser decodes them as latin1), where the
// UTF-8 conversion would double them.
const HEAD_SCRATCH = Buffer.allocUnsafe(128 * 1024);

/** The latin1 bytes of `head` for one uWS call (valid until the next call of this function). */
export function headBytes(head: string): Uint8Array | string {
  if (head.length > HEAD_SCRATCH.length) return head;
  return new Uint8Array(HEAD_SCRATCH.buffer, HEAD_SCRATCH.byteOffset, HEAD_SCRATCH.write(head, 0, 'latin1'));
}

/**
 * Ends a response to a HEAD request (or a 204/304) without a body, announcing
 * `contentLength` when it is known (>= 0). uWS 20.30's `endWithoutBody(n)` writes
 * `Content-Length: n` and then waits for those n bytes, dropping the keep-alive connection
 * at the next request; so the header is written here and uWS is given no length.
 */
export function endWithoutBody(res: HttpResponse, contentLength: number, closeConnection = false): void {
  if (closeConnection) {
    res.endWithoutBody(0, true);
    return;
  }
  if (contentLength >= 0) res.writeHeader('content-length', String(contentLength));
  res.endWithoutBody();
}

/** A gateway error as JSON: `{"error":{"code","message","request_id"}}` (DESIGN.md); HEAD gets the head only. */
export function writeErrorResponse(
  res: HttpResponse,
  status: number,
  code: string,
  message: string,
  requestId: string,
  closeConnection = false,
  headers?: ReadonlyArray<readonly [string, string]>,
  headRequest = false,
): void {
  const body = JSON.stringify({ error: { code, message, request_id: requestId } });
  res.cork(() => {
    res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json').writeHeader('x-request-id', requestId);
    if (headers !== undefined) for (const [k, v] of headers) res.writeHeader(k, v);
    if (headRequest) endWithoutBody(res, Buffer.byteLength(body), closeConnection);
    else res.end(body, closeConnection);
  });
}
