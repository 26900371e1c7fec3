// mlflow.tracking_uri (MLFLOW_TRACKING_URI) may be a local store, `file:` or `sqlite:`, or a
// `databricks:` profile: mlflow deployments resolve it themselves. The registry endpoints
// (GET /get_model_list, /get_model_version_list/{model}, POST /deploy/{model}/{version})
// speak a tracking server's REST API; with such a URI they answered 500 SLUICE_ERR_INTERNAL
// (a TypeError from the registry client). They now answer 503
// SLUICE_ERR_REGISTRY_NOT_CONFIGURED, saying what they need, without the URI itself.

import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24350-24359 belong to this file: 24350 the gateway, 24351 its admin API, 24352-24359
// model-server ports (unused).
t.test('the registry endpoints with a non-REST tracking URI: 503, naming what they need', async (t) => {
  const gw = await startGateway(
    { listen: { host: '127.0.0.1', port: 24350 }, admin: { host: '127.0.0.1', port: 24351 }, ports: { from: 24352, to: 24359 } },
    { MLFLOW_TRACKING_URI: 'sqlite:////tmp/sluice-registry-uri-secret-path/mlflow.db' },
  );
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  for (const [method, path] of [['GET', '/get_model_list'], ['GET', '/get_model_version_list/iris'], ['POST', '/deploy/iris/1']] as const) {
    const res = await admin.request(method, path);
    t.equal(res.status, 503, `${method} ${path}: 503`);
    t.match(res.body, { error: { code: 'SLUICE_ERR_REGISTRY_NOT_CONFIGURED', message: /need an MLflow tracking server \(http or https\); mlflow\.tracking_uri is a sqlite: store/ } });
    t.notMatch(res.text, /secret-path/, 'the URI itself is not shown');
  }
});
