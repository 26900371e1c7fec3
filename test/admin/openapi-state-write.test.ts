// The admin API's answers when the state store cannot keep a change (a state file that
// cannot be written: here a directory in its place, as a full disk would refuse it), checked
// against the OpenAPI document it serves: README says such a change is refused with
// `500 SLUICE_ERR_INTERNAL` naming the file, and no operation documented a 500, so a client
// generated from the document had no answer to expect. Every operation whose change the
// store keeps is called once so refused, and its answer must conform.

import { mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startRegistryStandIn, type RegistryStandIn } from '../fixtures/registry-stand-in.js';
import { reapServers } from '../helpers/control.js';
import { type ApiDocument, ResponseValidator } from '../helpers/openapi.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 29490-29499 belong to this file.
const RANGE = { from: 29490, to: 29499 };
const stateDir = join(t.testdir(), 'state');

let registry: RegistryStandIn | undefined;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await registry?.close();
  await reapServers([], RANGE);
});

/** A directory where the state file goes: every write of it fails (EISDIR). */
function block(name: string): () => void {
  rmSync(join(stateDir, name), { force: true });
  mkdirSync(join(stateDir, name));
  return () => rmdirSync(join(stateDir, name));
}

t.test('a change the state store cannot keep is answered as the document says', async (t) => {
  registry = await startRegistryStandIn();
  gw = await startGateway({
    ports: RANGE, state_dir: stateDir,
    mlflow: { tracking_uri: registry.trackingUri, bin: '/nonexistent/sluice-test-mlflow' },
  });
  const doc = (await (await fetch(`${gw.adminUrl}/openapi.json`)).json()) as ApiDocument;
  const validator = new ResponseValidator(doc);

  /** One request: its status, and its conformance to the document's `method template`. */
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const tpl = Object.keys(doc.paths).find((p) => new RegExp(`^${p.replace(/\{\w+\}/g, '[^/?]+')}(\\?.*)?$`).test(path))!;
    const res = await fetch(gw!.adminUrl + path, {
      method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const parsed: unknown = await res.json();
    t.same(validator.problems(method, tpl, res.status, res.headers.get('content-type'), parsed), [], `${method} ${path} ${res.status} conforms to the document`);
    return { status: res.status, body: parsed };
  };
  const refused = async (method: string, path: string, file: string, body?: unknown): Promise<void> => {
    const r = await call(method, path, body);
    t.equal(r.status, 500, `${method} ${path}: 500`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_INTERNAL', 'SLUICE_ERR_INTERNAL');
    t.match(r.body?.error?.message, new RegExp(`${file.replace('.', '\\.')}: cannot write it`), `naming ${file}`);
  };

  for (const version of ['1', '2']) t.equal((await call('POST', '/v1/deployments?wait=true', { model: 'sw', version, runtime: 'sim' })).status, 201, `sw-${version} deployed`);
  t.equal((await call('POST', '/v1/keys', { name: 'k1' })).status, 201, 'key k1 added');
  t.equal((await call('POST', '/v1/models/sw/promote', { version: '1' })).status, 200, 'sw 1 promoted');

  let unblock = block('traffic.json');
  await refused('PUT', '/v1/models/sw/traffic', 'traffic.json', { weights: { 1: 50, 2: 50 } });
  await refused('POST', '/v1/models/sw/promote', 'traffic.json', { version: '2' });
  await refused('POST', '/v1/models/sw/rollback', 'traffic.json');
  await refused('PUT', '/v1/models/sw/rollout', 'traffic.json', { canary: '2', interval_s: 3600 });
  unblock();
  t.equal((await call('PUT', '/v1/models/sw/rollout', { canary: '2', interval_s: 3600 })).status, 201, 'a rollout started');
  unblock = block('traffic.json');
  await refused('DELETE', '/v1/models/sw/rollout', 'traffic.json');
  unblock();

  unblock = block('api-keys.json');
  await refused('POST', '/v1/keys', 'api-keys.json', { name: 'k2' });
  await refused('DELETE', '/v1/keys/k1', 'api-keys.json');
  unblock();

  unblock = block('desired.json');
  await refused('POST', '/v1/deployments', 'desired.json', { model: 'sw', version: '3', runtime: 'sim' });
  await refused('DELETE', '/v1/deployments/sw-2?grace_ms=0', 'desired.json');
  await refused('POST', '/undeploy/sw-2?grace_ms=0', 'desired.json');
  await refused('POST', '/deploy/iris/1', 'desired.json', {});
  unblock();
  t.equal((await call('DELETE', '/v1/deployments/sw-2?grace_ms=0')).status, 200, 'once it can be written, the undeploy is done');
});
