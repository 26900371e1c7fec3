// A path route of an `ollama` deployment sends its own model to the server, whatever the
// body names. Every Ollama server on a machine serves every model pulled into its
// ~/.ollama, so a path route that passed the body's `model` on let a key allowed `pub-1`
// call `private:1` (whose deployment needs a key the caller does not hold) through
// /pub-1/api/generate. The root rewrites to `<model>:<version>`; path routes now do too.
// The `ollama` binary here is a shim that runs the Ollama simulator, serving both models.

import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { reapServers } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 23920-23924 belong to this file.
const RANGE = { from: 23920, to: 23924 };
const KEY = 'sk-sluice-ollama-path-private-0001';
let gw: Gateway;

t.before(async () => {
  const bin = mkdtempSync(join(tmpdir(), 'sluice-ollama-shim-'));
  const cli = join(process.cwd(), 'dist', 'cli.js');
  // OLLAMA_HOST is host:port, as Ollama reads it.
  writeFileSync(join(bin, 'ollama'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" sim --port "\${OLLAMA_HOST##*:}" --models pub:1,private:1 --ttft-ms 1 --tokens 2\n`);
  chmodSync(join(bin, 'ollama'), 0o755);
  gw = await startGateway({
    ports: RANGE,
    api_keys: [{ name: 'private-team', key: KEY, deployments: ['private-1'] }],
    deployments: [
      { model: 'pub', version: '1', runtime: 'ollama' },
      { model: 'private', version: '1', runtime: 'ollama', policies: { auth: { required: true } } },
    ],
  }, { PATH: `${bin}:${process.env.PATH}` });
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

function generate(path: string, model: string, key?: string): Promise<{ status: number; json: { model?: string; error?: unknown } }> {
  return httpRequest(`${gw.url}${path}`, {
    method: 'POST', body: JSON.stringify({ model, prompt: 'hi', stream: false }),
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
  }).then((r) => ({ status: r.status, json: JSON.parse(r.body) as { model?: string } }));
}

t.test('a path route of an ollama deployment serves its own model, not the one the body names', async (t) => {
  t.equal((await generate('/api/generate', 'private:1')).status, 401, 'the private model needs its key at the root');
  const through = await generate('/pub-1/api/generate', 'private:1');
  t.equal(through.status, 200);
  t.equal(through.json.model, 'pub:1', 'pub-1\'s server was asked for pub:1, not private:1');
  t.equal((await generate('/pub-1/api/generate', 'pub:1')).json.model, 'pub:1', 'its own name is kept');
  const keyed = await generate('/private-1/api/generate', 'whatever', KEY);
  t.equal(keyed.status, 200, 'the private deployment, with its key');
  t.equal(keyed.json.model, 'private:1');
});
