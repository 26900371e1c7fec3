// The model name a server reports: the first id of its GET /v1/models, under the URL's
// own path; anything else (an error status, a body that is not a model list, no answer)
// leaves it unknown.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { reportedModel } from '../../src/health/index.js';
import { freePort } from '../fixtures/free-port.js';

/** A server answering every GET with `status` and `body`, recording the paths asked for. */
async function serve(t: Test, status: number, body: string): Promise<{ url: string; paths: string[] }> {
  const paths: string[] = [];
  const server: Server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths };
}

t.test('the first id of the list, asked under the URL\'s path', async (t) => {
  const s = await serve(t, 200, JSON.stringify({ object: 'list', data: [{ id: 'tiny-q8', object: 'model' }, { id: 'other', object: 'model' }] }));
  t.equal(await reportedModel(s.url), 'tiny-q8');
  t.equal(await reportedModel(`${s.url}/openai/`), 'tiny-q8');
  t.same(s.paths, ['/v1/models', '/openai/v1/models']);
});

t.test('no name: an error status, an empty list, an id that is not a name, not JSON, nobody listening', async (t) => {
  for (const [status, body] of [
    [404, '{"detail":"Not Found"}'],
    [200, '{"object":"list","data":[]}'],
    [200, '{"data":[{"id":""}]}'],
    [200, '{"data":[{"id":7}]}'],
    [200, '{"models":[{"name":"llama3"}]}'],
    [200, 'null'],
    [200, '<html>'],
  ] as const) {
    const s = await serve(t, status, body);
    t.equal(await reportedModel(s.url), null, `${status} ${body}`);
  }
  t.equal(await reportedModel(`http://127.0.0.1:${await freePort()}`), null, 'connection refused');
});
