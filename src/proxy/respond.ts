import type { HttpResponse } from 'uWebSockets.js';
import { STATUS_LINES } from '../errors/index.js';
import { STATUS_CODES } from 'node:http';

const statusCache = new Map<number, string>(Object.entries(STATUS_LINES).map(([k, v]) => [Number(k), v]));

/** "200 OK" for uWS's writeStatus, cached so a response does not build the string. */
export function statusLine(status: number): string {
  let line = statusCache.get(status);
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
    statusCache.set(status, line);
  }
  return line;
}

/** A gateway error as JSON: `{"error":{"code","message","request_id"}}` (DESIGN.md). */
export function writeErrorResponse(
  res: HttpResponse,
  status: number,
  code: string,
  message: string,
  requestId: string,
  closeConnection = false,
  headers?: ReadonlyArray<readonly [string, string]>,
): void {
  const body = JSON.stringify({ error: { code, message, request_id: requestId } });
  res.cork(() => {
    res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json').writeHeader('x-request-id', requestId);
    if (headers !== undefined) for (const [k, v] of headers) res.writeHeader(k, v);
    res.end(body, closeConnection);
  });
}
