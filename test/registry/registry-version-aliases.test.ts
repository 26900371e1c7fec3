// MLflow's model-versions/search leaves every version's `aliases` out (3.17; model-versions/get
// and the registered model carry them), so GET /get_model_version_list/{model} showed
// `"aliases": []` for every version while /get_model_list listed `champion` on one: a team
// picking the version to deploy by its alias read that none had one. The versions' aliases
// now come from the registered model.

import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';
import { startRegistryStandIn } from '../fixtures/registry-stand-in.js';

// Ports 28180-28189 belong to this file: 28180 the gateway, 28181 its admin API, 28182 the
// registry stand-in (which answers as MLflow 3.17 does), 28183-28189 model-server ports (unused).
t.test('each version lists the aliases that point at it', async (t) => {
  const registry = await startRegistryStandIn(28182);
  t.teardown(() => registry.close());
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 28180 }, admin: { host: '127.0.0.1', port: 28181 }, ports: { from: 28183, to: 28189 },
    mlflow: { tracking_uri: registry.trackingUri },
  });
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  const models = await admin.get('/get_model_list');
  t.same(models.body.models[0].aliases, { champion: '1', canary: '2', 'latest-good': '2' }, 'the model\'s aliases');
  const versions = await admin.get('/get_model_version_list/iris');
  t.equal(versions.status, 200, versions.text);
  t.same(versions.body.versions.map((v: { version: string; aliases: string[] }) => [v.version, v.aliases]), [['1', ['champion']], ['2', ['canary', 'latest-good']]], 'and each version its own');
  const unknown = await admin.get('/get_model_version_list/nope');
  t.equal(unknown.status, 404, 'an unknown model is still 404');
});
