// One readiness probe: GET <path>, ready only on 200. TCP connect is not enough: Ollama
// and multi-worker uvicorn/gunicorn accept connections before they can answer, so each
// probe has its own deadline covering connect, headers and body.

import { request } from 'node:http';

export function probe(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const req = request({ host, port, path, method: 'GET', agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      // 'close' follows both a full body and a destroyed one; only a complete 200 counts.
      res.on('close', () => {
        clearTimeout(timer);
        resolve(res.complete && res.statusCode === 200);
      });
      res.on('error', () => {});
    });
    const timer = setTimeout(() => req.destroy(), timeoutMs);
    req.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    req.end();
  });
}
