// A small HTTP client for tests that need what fetch hides: raw chunk timing, exact
// headers, aborting mid-stream, keep-alive control.

import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Arrival time (ms since request start) and text of each body chunk. */
  chunks: Array<{ at: number; text: string }>;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Abort the request once this predicate over the body so far is true. */
  abortWhen?: (bodySoFar: string) => boolean;
  timeoutMs?: number;
}

export function httpRequest(url: string, opts: RequestOptions = {}): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res: IncomingMessage) => {
      const chunks: Reply['chunks'] = [];
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        chunks.push({ at: performance.now() - started, text });
        body += text;
        if (opts.abortWhen?.(body)) {
          req.destroy();
          resolve({ status: res.statusCode!, headers: res.headers, body, chunks });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, chunks }));
      res.on('error', (err) => {
        if (opts.abortWhen) return;
        reject(err);
      });
    });
    req.on('error', reject);
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error('test request timed out')));
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

export function json<T = Record<string, unknown>>(r: Reply): T {
  return JSON.parse(r.body) as T;
}
