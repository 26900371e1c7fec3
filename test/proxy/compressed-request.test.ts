// A request body sent compressed (`Content-Encoding: gzip`, as a client may send a large
// prompt) where the gateway reads the body: at the front door (the body's model picks the
// deployment) and on a path route whose model is rewritten to its served_model. The gateway
// does not decode bodies: it says so (415, RFC 9110's status for a content coding it does
// not take, with `Accept-Encoding: identity`), in the protocol's shape, rather than calling
// the client's valid JSON unparseable. A path route that reads no body forwards it as sent.

import { deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { httpRequest, json, metric, type Reply } from '../helpers/http.js';
import { metricsText, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 20100-20109 belong to this file.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 20100, to: 20109 },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim', args: ['--token-ms', '1', '--ttft-ms', '0'] },
      { model: 'chat', version: '2', runtime: 'sim', args: ['--models', 'llama3:8b', '--token-ms', '1', '--ttft-ms', '0'], served_model: 'llama3:8b' },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

const CHAT = JSON.stringify({ model: 'demo', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
const post = (path: string, body: string | Buffer, coding?: string): Promise<Reply> =>
  httpRequest(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(coding === undefined ? {} : { 'content-encoding': coding }) }, body });

t.test('a compressed body at the front door: 415 naming Content-Encoding, in the protocol\'s shape', async (t) => {
  const openai = await post('/v1/chat/completions', gzipSync(CHAT), 'gzip');
  t.equal(openai.status, 415);
  t.equal(openai.headers['accept-encoding'], 'identity', 'the codings a body may come in: none');
  t.match(json(openai), { error: { code: 'SLUICE_ERR_CONTENT_ENCODING', message: /Content-Encoding: gzip.*send it uncompressed/, type: 'invalid_request_error', request_id: openai.headers['x-request-id'] } });
  const ollama = await post('/api/chat', deflateSync(CHAT), 'deflate');
  t.equal(ollama.status, 415);
  t.match(json(ollama), { error: /Content-Encoding: deflate/, request_id: ollama.headers['x-request-id'] }, 'Ollama\'s {"error":"<message>"}');
  const same = await post('/v1/chat/completions', CHAT);
  t.equal(same.status, 200, 'the same JSON uncompressed is routed');
});

t.test('on a path route that rewrites the model: 415 too; one that reads no body forwards it as sent', async (t) => {
  const rewritten = await post('/chat-2/v1/chat/completions', gzipSync(CHAT), 'gzip');
  t.equal(rewritten.status, 415);
  t.match(json(rewritten), { error: { code: 'SLUICE_ERR_CONTENT_ENCODING' } });
  // The path named the deployment: its metrics count the refusal, as any request for it (P8).
  const text = await metricsText(gw);
  t.equal(metric(text, 'sluice_gateway_refusals_total', { deployment: 'chat-2', code: 'SLUICE_ERR_CONTENT_ENCODING' }), 1, 'a refusal of chat-2');
  t.equal(metric(text, 'sluice_requests_total', { deployment: 'chat-2', code: '415' }), 1, 'in its requests');
  t.equal(metric(text, 'sluice_gateway_refusals_total', { deployment: '', code: 'SLUICE_ERR_CONTENT_ENCODING' }), 2, 'the root\'s two are no deployment\'s');
  const asSent = await post('/demo-1/v1/chat/completions', gzipSync(CHAT), 'gzip');
  t.equal(asSent.status, 400, 'the server\'s own answer to bytes it cannot read');
  t.notMatch(asSent.body, /SLUICE_ERR/, 'not the gateway\'s');
});

t.test('a body that is not JSON, uncompressed or said to be identity, is still a bad request', async (t) => {
  for (const coding of [undefined, 'identity']) {
    const r = await post('/v1/chat/completions', '{"model":', coding);
    t.equal(r.status, 400, `Content-Encoding ${coding ?? 'absent'}`);
    t.match(json(r), { error: { code: 'SLUICE_ERR_BAD_REQUEST', message: 'We could not parse the JSON body of your request.' } });
  }
});
