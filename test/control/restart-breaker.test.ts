// A model server that crashes is restarted by the supervisor; the requests it took down
// with it open its replica's breaker. The restarted server is a new one: once it is ready
// it takes requests at once. It used to stay out until the breaker's reset timeout let a
// probe through: a one-replica deployment answered 503 SLUICE_ERR_CIRCUIT_OPEN for that
// long (5 s by default) with its server up, and with two replicas a second crash then
// failed requests while a ready replica was there.

import t from 'tap';
import { adminClient, gwRequest, reapServers, waitFor } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 25400-25409 belong to this file: gateway, admin, then the replicas'.
const RANGE = { from: 25402, to: 25409 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

const chat = { model: 'one', stream: true, messages: [{ role: 'user', content: 'hi' }] };

t.test('a replica restarted after a crash takes requests as soon as it is ready', async (t) => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 25400 }, admin: { host: '127.0.0.1', port: 25401 }, ports: RANGE,
    deployments: [{
      model: 'one', version: '1', runtime: 'sim', args: ['--tokens', '100', '--token-ms', '20'],
      // One failure opens it, and only a probe a minute later would close it again.
      policies: { breaker: { consecutive_failures: 1, reset_timeout_ms: 60_000 } },
    }],
  });
  const admin = adminClient(gw.adminUrl);
  const before = (await admin.deployment('one-1'))!.replicas[0]!;

  // A stream under way when the server dies: its cut opens the breaker.
  let started!: () => void;
  const streaming = new Promise<void>((resolve) => { started = resolve; });
  const cut = gwRequest(`${gw.url}/one-1/v1/chat/completions`, { body: chat, onChunk: () => started() });
  await streaming;
  process.kill(before.pid!, 'SIGKILL');
  const r = await cut;
  t.match(r.text, /event: error/, 'the stream in flight ends with its error event');

  const restarted = await waitFor(async () => {
    const v = (await admin.deployment('one-1'))!.replicas[0]!;
    return v.state === 'ready' && v.pid !== before.pid ? v : undefined;
  }, 20_000, 'the supervisor to restart the server');
  t.equal(restarted.breaker, 'closed', 'the new server is not held to the dead one\'s failures');

  const after = await gwRequest(`${gw.url}/one-1/v1/chat/completions`, { body: { ...chat, stream: false } });
  t.equal(after.status, 200, `served by the restarted server (${after.json?.error?.code ?? 'no error'})`);
});
