// Requests on API keys that arrive together: a name or a key being stored is taken from
// the moment it is checked, so that of several creates with one name, or one key under
// several names, exactly one is added and the others get 409, as they would one after
// another; of two removals of one key, one removes it and the other gets 404.

import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient } from '../helpers/control.js';

t.setTimeout(60_000);

let gw: Gateway | undefined;
t.teardown(async () => {
  await gw?.stop();
});

t.test('parallel key creates and removals: one wins, the others are refused', async (t) => {
  // Replica ports 19266-19267 belong to this file (nothing is deployed).
  gw = await startGateway({ ports: { from: 19266, to: 19267 } }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const names = async (): Promise<string[]> => (await admin.get('/v1/keys')).body.keys.map((k: { name: string }) => k.name).sort();

  const same = await Promise.all(Array.from({ length: 5 }, () => admin.post('/v1/keys', { name: 'dup', deployments: ['sec'] })));
  t.same(same.map((r) => r.status).sort(), [201, 409, 409, 409, 409], 'five creates of one name: one 201, four 409');
  t.equal(same.filter((r) => r.status === 201 && typeof r.body.key === 'string').length, 1, 'one generated key is shown');
  t.ok(same.filter((r) => r.status === 409).every((r) => r.body.error.code === 'SLUICE_ERR_CONFLICT'), 'the others: SLUICE_ERR_CONFLICT');
  t.same(await names(), ['dup'], 'one key is listed');

  const key = 'sk-shared-secret-0123456789';
  const shared = await Promise.all(['one', 'two', 'three'].map((name) => admin.post('/v1/keys', { name, key })));
  t.same(shared.map((r) => r.status).sort(), [201, 409, 409], 'one key under three names at once: one 201, two 409');
  t.notOk(shared.some((r) => r.text.includes(key)), 'no answer shows the key');
  t.equal((await names()).length, 2, 'one of the three names is listed');

  const removals = await Promise.all([admin.del('/v1/keys/dup'), admin.del('/v1/keys/dup')]);
  t.same(removals.map((r) => r.status).sort(), [200, 404], 'two removals of one key: one 200, one 404');
  t.notOk((await names()).includes('dup'), 'and it is gone');
});
