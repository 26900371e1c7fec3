// A llamacpp deployment as another deployment's fallback. llama-cpp-python's server answers
// 400 to an x-request-id that is not a UUID, so a llamacpp deployment gets an id sluice
// makes in place of such a client's (README, Routing); as a fallback it got the client's
// own, kept in the request head made for the deployment addressed: every request it took
// in another's place was a 400. The client still gets its own id back.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LLAMA_THREADS, writeTinyGguf } from '../fixtures/llama-server.js';
import { reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 22940-22944 belong to this file.
const RANGE = { from: 22940, to: 22944 };
const dir = mkdtempSync(join(tmpdir(), 'sluice-llama-fallback-'));
const modelPath = join(dir, 'tiny.gguf');
let gw: Gateway;

t.before(async () => {
  await writeTinyGguf(modelPath);
  gw = await startGateway({
    ports: RANGE,
    deployments: [
      { model: 'tiny', version: '1', runtime: 'llamacpp', model_path: modelPath, args: [...LLAMA_THREADS] },
      // Answers 503 to every generation: tiny-1 serves its requests.
      { model: 'front', version: '1', runtime: 'sim', args: ['--status', '503'], fallbacks: ['tiny-1'] },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
  rmSync(dir, { recursive: true, force: true });
});

function chat(url: string, requestId: string): Promise<Reply> {
  return httpRequest(url, {
    method: 'POST',
    body: JSON.stringify({ model: 'front', max_tokens: 2, messages: [{ role: 'user', content: 'x' }] }),
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
  });
}

t.test('a client\'s own request id that is not a UUID: the llamacpp fallback serves it', async (t) => {
  for (const [url, id] of [[`${gw.url}/v1/chat/completions`, 'client-id-root'], [`${gw.url}/front-1/v1/chat/completions`, 'client-id-path']] as const) {
    const r = await chat(url, id);
    t.equal(r.status, 200, `${id}: ${r.status} ${r.body.slice(0, 200)}`);
    t.equal(r.headers['x-sluice-served-by'], 'tiny-1');
    t.equal(r.headers['x-request-id'], id, 'the client gets its own id back');
    t.equal(JSON.parse(r.body).object, 'chat.completion');
  }
});
