// One readiness probe: GET <path>, ready only on 200. TCP connect is not enough: Ollama
// and multi-worker uvicorn/gunicorn accept connections before they can answer, so each
// probe has its own deadline covering connect, headers and body.

import { request } from 'node:http';

export function probe(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return probeDetailed(host, port, path, timeoutMs).then((error) => error === null);
}

/** Resolves null when GET `path` answered a complete 200 within `timeoutMs`, else why not. */
export function probeDetailed(host: string, port: number, path: string, timeoutMs: number, headers?: Readonly<Record<string, string>>): Promise<string | null> {
  return new Promise<string | null>((resolve) => {
    let timedOut = false;
    const req = request({ host, port, path, method: 'GET', agent: false, headers: { ...headers, connection: 'close' } }, (res) => {
      res.resume();
      // 'close' follows both a full body and a destroyed one; only a complete 200 counts.
      res.on('close', () => {
        clearTimeout(timer);
        if (!res.complete) resolve(timedOut ? `no complete answer to GET ${path} within ${timeoutMs} ms` : `GET ${path}: the response was cut short`);
        else resolve(res.statusCode === 200 ? null : `GET ${path} answered ${res.statusCode}`);
      });
      res.on('error', () => {});
    });
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(timedOut ? `no answer to GET ${path} within ${timeoutMs} ms` : (err.code ?? err.message));
    });
    req.end();
  });
}
