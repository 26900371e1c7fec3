// A `sim` deployment whose args name its models (README: `args: ["--models",
// "llama3.2:1b,qwen2.5"]` serves exactly those) at the front door: requests for the
// deployment are rewritten to the first of those names, the one the simulator lists first,
// not to the deployment's model, which it does not serve. Path routes stay as sent.
//
// Replica ports 26530-26539 belong to this file (the gateway and admin ports are ephemeral).

import OpenAI from 'openai';
import { Ollama } from 'ollama';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const MESSAGES = [{ role: 'user' as const, content: 'hi' }];
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 26530, to: 26539 },
    deployments: [
      { model: 'named', version: '1', runtime: 'sim', args: ['--models', 'llama3.2:1b,qwen2.5', '--token-ms', '1', '--ttft-ms', '0'] },
      { model: 'plain', version: '1', runtime: 'sim', args: ['--token-ms', '1', '--ttft-ms', '0'] },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

t.test('the admin view shows the name requests are rewritten to', async (t) => {
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.deployment('named-1'))?.served_model, 'llama3.2:1b', 'the first of --models');
  t.equal((await admin.deployment('plain-1'))?.served_model, 'plain', 'without --models: the deployment\'s model, as before');
});

t.test('the openai and ollama clients at the root reach the simulator by the deployment\'s name', async (t) => {
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  for (const model of ['named', 'named-1']) {
    const chat = await openai.chat.completions.create({ model, messages: MESSAGES, max_tokens: 2 });
    t.equal(chat.model, 'llama3.2:1b', `${model}: answered as llama3.2:1b (404 'model not found' when asked for 'named')`);
    t.equal(chat.choices[0]?.message.content, 'tok0 tok1 ');
  }
  const ollama = new Ollama({ host: gw.url });
  const reply = await ollama.chat({ model: 'named:1', messages: MESSAGES, options: { num_predict: 2 } });
  t.equal(reply.model, 'llama3.2:1b', 'Ollama\'s API too');
  const plain = await openai.chat.completions.create({ model: 'plain', messages: MESSAGES, max_tokens: 2 });
  t.equal(plain.model, 'plain');
});

t.test('a path route is not rewritten: the client names the server\'s model itself', async (t) => {
  const ask = (model: string): Promise<number> => httpRequest(`${gw.url}/named-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: MESSAGES, max_tokens: 2 }),
  }).then((r) => r.status);
  t.equal(await ask('qwen2.5'), 200);
  t.equal(await ask('named'), 404, 'the simulator\'s own 404: the body went as sent');
});
