// One readiness probe: GET <path>, ready only on 200. TCP connect is not enough: Ollama
// and multi-worker uvicorn/gunicorn accept connections before they can answer, so each
// probe has its own deadline covering connect, headers and body.

import { Buffer } from 'node:buffer';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as tlsRequest } from 'node:https';
import { shownTarget } from '../target-query.js';

/** A server to ask: a local replica, or a remote URL's host and port. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  /** An `https://` remote: asked over TLS, its certificate checked. Default false. */
  readonly tls?: boolean;
}

/** Where a URL (a remote replica's, http or https) is asked: its host without IPv6 brackets, the scheme's port when it names none. */
export function endpointOf(url: URL): Required<Endpoint> {
  const tls = url.protocol === 'https:';
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (tls ? 443 : 80)), tls };
}

export function probe(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return probeDetailed({ host, port }, path, timeoutMs).then((error) => error === null);
}

/** Resolves null when GET `path` answered a complete 200 within `timeoutMs`, else why not. */
export async function probeDetailed(endpoint: Endpoint, path: string, timeoutMs: number, headers?: Readonly<Record<string, string>>): Promise<string | null> {
  const answer = await getText(endpoint, path, timeoutMs, 0, headers);
  return typeof answer === 'string' ? answer : answer.status === 200 ? null : `GET ${shownTarget(path)} answered ${answer.status}`;
}

/**
 * GET `path` with one deadline over connect, headers and body: the status and the first
 * `maxBytes` of the body (the rest is read and dropped), or why no complete answer came.
 */
export function getText(
  { host, port, tls }: Endpoint, path: string, timeoutMs: number, maxBytes: number, headers?: Readonly<Record<string, string>>,
): Promise<{ status: number; body: string } | string> {
  return new Promise((resolve) => {
    let timedOut = false;
    let req: ClientRequest;
    try {
      req = (tls === true ? tlsRequest : request)({ host, port, path, method: 'GET', agent: false, headers: { ...headers, connection: 'close' } }, onResponse);
    } catch (err) {
      // A path or header Node refuses to send (ERR_UNESCAPED_CHARACTERS, ERR_INVALID_CHAR) is
      // this probe's failure: thrown, it would be an unhandled rejection in the checks' timers.
      resolve(`GET ${shownTarget(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return;
    }
    function onResponse(res: IncomingMessage): void {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (chunk: Buffer) => {
        if (kept < maxBytes) {
          chunks.push(chunk);
          kept += chunk.length;
        }
      });
      // 'close' follows both a full body and a destroyed one; only a complete answer counts.
      // A body that ends with the connection counts as complete even when the deadline's
      // destroy ended it (Node's parser finishes it at the close): one still coming then is not.
      res.on('close', () => {
        clearTimeout(timer);
        if (timedOut || !res.complete) resolve(timedOut ? `no complete answer to GET ${shownTarget(path)} within ${timeoutMs} ms` : `GET ${shownTarget(path)}: the response was cut short`);
        else resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8', 0, Math.min(kept, maxBytes)) });
      });
      res.on('error', () => {});
    }
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(timedOut ? `no answer to GET ${shownTarget(path)} within ${timeoutMs} ms` : (err.code ?? err.message));
    });
    req.end();
  });
}
