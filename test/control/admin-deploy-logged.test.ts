// An operator's deploy and undeploy through the admin API are in the gateway's JSON log, as
// an API key's addition and a traffic change are (`API key added`, `traffic changed`): they
// logged nothing but their replicas' states, so the log could not say who was deployed or
// undeployed when, nor that an undeploy was draining. The spec itself is not logged: its
// env may hold secrets.

import t from 'tap';
import { adminClient, reapServers } from '../helpers/control.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 29520-29529 belong to this file.
const RANGE = { from: 29520, to: 29529 };
const SECRET = 'not-for-the-log-7f3a9c';
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({ ports: RANGE, log: { level: 'info', access: false } });
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.test('deploy and undeploy through the admin API are logged', async (t) => {
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments?wait=true', { model: 'al', version: '1', runtime: 'sim', replicas: 2, env: { TOKEN_OF_SERVER: SECRET } })).status, 201, 'al-1 deployed');
  const deployed = await eventually(() => jsonLogs(gw).find((l) => l['msg'] === 'deployed through the admin API'), 5_000);
  t.match(deployed, { level: 'info', deployment: 'al-1', runtime: 'sim', replicas: 2 }, 'the deploy, at info, with its runtime and replicas');

  t.equal((await admin.del('/v1/deployments/al-1?grace_ms=0')).status, 200, 'al-1 undeployed');
  const logs = await eventually(() => {
    const l = jsonLogs(gw);
    return l.some((x) => x['msg'] === 'undeployed') ? l : undefined;
  }, 5_000);
  const undeploying = logs.findIndex((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('undeploying') && l['deployment'] === 'al-1');
  const undeployed = logs.findIndex((l) => l['msg'] === 'undeployed' && l['deployment'] === 'al-1');
  t.ok(undeploying >= 0 && logs[undeploying]!['grace_ms'] === 0, 'the undeploy\'s start, with its grace');
  t.ok(undeployed > undeploying, 'then its end');
  t.notOk(gw.lines.some((l) => l.includes(SECRET)), 'the deployment\'s env is never logged');
});
