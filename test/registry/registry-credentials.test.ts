// A tracking server that wants credentials (MLflow's basic-auth app, a token behind a proxy):
// the team sets MLflow's own variables, MLFLOW_TRACKING_USERNAME and _PASSWORD or
// MLFLOW_TRACKING_TOKEN, in the gateway's environment. Its mlflow servers inherit them and
// authenticated, but the registry endpoints (GET /get_model_list, /get_model_version_list,
// POST /deploy/{model}/{version}) sent nothing and answered 502
// SLUICE_ERR_REGISTRY_UNAUTHORIZED. They now send what MLflow's clients send.

import t, { type Test } from 'tap';
import { adminClient } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';
import { startRegistryStandIn } from '../fixtures/registry-stand-in.js';

// Ports 28140-28149 belong to this file: 28140 the gateway, 28141 its admin API, 28142 the
// registry stand-in, 28143-28149 model-server ports (unused).
const REGISTRY_PORT = 28142;
const BASIC = `Basic ${Buffer.from('team:s3cret').toString('base64')}`;

async function registryCalls(t: Test, authorization: string, env: NodeJS.ProcessEnv, trackingUri?: string): Promise<Array<string | null>> {
  const seen: Array<string | null> = [];
  const registry = await startRegistryStandIn(REGISTRY_PORT, { authorization, seen });
  t.teardown(() => registry.close());
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 28140 }, admin: { host: '127.0.0.1', port: 28141 }, ports: { from: 28143, to: 28149 },
    mlflow: { tracking_uri: trackingUri ?? registry.trackingUri },
  }, env);
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  const models = await admin.get('/get_model_list');
  t.equal(models.status, 200, `GET /get_model_list: ${models.text.slice(0, 300)}`);
  t.same(models.body.models?.map((m: { name: string }) => m.name), ['iris']);
  const versions = await admin.get('/get_model_version_list/iris');
  t.equal(versions.status, 200, `GET /get_model_version_list/iris: ${versions.text.slice(0, 300)}`);
  // The registry's answer for a version it lacks: the call got through.
  const missing = await admin.post('/deploy/iris/7');
  t.equal(missing.status, 404, `POST /deploy/iris/7: ${missing.text.slice(0, 300)}`);
  return seen;
}

t.test('MLFLOW_TRACKING_USERNAME and _PASSWORD: basic auth on every registry call', async (t) => {
  const seen = await registryCalls(t, BASIC, { MLFLOW_TRACKING_USERNAME: 'team', MLFLOW_TRACKING_PASSWORD: 's3cret' });
  t.ok(seen.length >= 3 && seen.every((a) => a === BASIC), `every call authenticated (${seen.length})`);
});

t.test('MLFLOW_TRACKING_TOKEN: a bearer token', async (t) => {
  const seen = await registryCalls(t, 'Bearer tok-123', { MLFLOW_TRACKING_TOKEN: 'tok-123' });
  t.ok(seen.length >= 3 && seen.every((a) => a === 'Bearer tok-123'), `every call authenticated (${seen.length})`);
});

t.test('both set: basic auth, as MLflow\'s clients choose; over credentials in the URI too', async (t) => {
  const seen = await registryCalls(t, BASIC, { MLFLOW_TRACKING_USERNAME: 'team', MLFLOW_TRACKING_PASSWORD: 's3cret', MLFLOW_TRACKING_TOKEN: 'tok-123' }, `http://other:pw@127.0.0.1:${REGISTRY_PORT}`);
  t.ok(seen.every((a) => a === BASIC), 'the variables win');
});

t.test('none set: credentials in the URI still work', async (t) => {
  const seen = await registryCalls(t, BASIC, {}, `http://team:s3cret@127.0.0.1:${REGISTRY_PORT}`);
  t.ok(seen.every((a) => a === BASIC));
});
