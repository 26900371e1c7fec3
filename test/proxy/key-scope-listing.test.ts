// A key allowed one version of a model (`m-1`) was shown the model's alias (`m`) in
// /v1/models and /api/tags, which then answered it 403 on about half of its requests: the
// alias picks among versions the key may not call (T2). An alias is listed only to a key that
// may call every version behind it; a key allowed the model sees both.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { reapServers } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

// Replica ports 22560-22569 belong to this file.
const RANGE = { from: 22560, to: 22569 };

t.test('an alias is listed only to keys that may call every version behind it', async (t) => {
  const gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    api_keys: [{ name: 'one', key: 'sk-one-version-only-0001', deployments: ['m-1'] }, { name: 'all', key: 'sk-the-whole-model-0002', deployments: ['m'] }],
    deployments: [
      { model: 'm', version: '1', runtime: 'sim', policies: { auth: { required: true } } },
      { model: 'm', version: '2', runtime: 'sim', policies: { auth: { required: true } } },
    ],
    traffic: { m: { '1': 50, '2': 50 } },
  });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const listed = async (key: string): Promise<{ openai: string[]; ollama: string[] }> => {
    const headers = { authorization: `Bearer ${key}` };
    const openai = JSON.parse((await httpRequest(`${gw.url}/v1/models`, { headers })).body).data.map((m: { id: string }) => m.id).sort();
    const ollama = JSON.parse((await httpRequest(`${gw.url}/api/tags`, { headers })).body).models.map((m: { name: string }) => m.name).sort();
    return { openai, ollama };
  };
  t.same(await listed('sk-one-version-only-0001'), { openai: ['m-1'], ollama: ['m:1'] }, 'the version it may call, not the alias');
  t.same(await listed('sk-the-whole-model-0002'), { openai: ['m', 'm-1', 'm-2'], ollama: ['m:1', 'm:2', 'm:latest'] }, 'the alias and its versions');
  // What it lists, it may call: every time.
  for (let i = 0; i < 10; i++) {
    const r = await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer sk-one-version-only-0001', 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm-1', messages: [{ role: 'user', content: 'hi' }] }) });
    if (r.status !== 200) t.fail(`m-1: ${r.status}`);
  }
});
