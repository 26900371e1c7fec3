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
