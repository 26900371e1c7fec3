// A deployment's total_timeout_ms is its clients' time budget. Once a fallback took a
// request (the addressed deployment refused its connection), the budget was dropped: the
// fallback's own (none) applied, and a client of a 1 s deployment waited 3 s for a 200 (T5).
// It still holds, from the request's arrival; and the fallback's own, where shorter.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { reapServers } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 22550-22559 belong to this file: 22559 is where nothing listens (the addressed
// deployment's server), 22550-22558 the simulators.
const RANGE = { from: 22550, to: 22558 };
const DEAD = 'http://127.0.0.1:22559';

t.test('the addressed deployment\'s total_timeout_ms holds once a fallback takes the request', async (t) => {
  const gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [
      { model: 'budget', version: '1', runtime: 'remote', urls: [DEAD], health_check: { enabled: false }, fallbacks: ['slowfb-1'], policies: { total_timeout_ms: 1000, retry: { attempts: 0 } } },
      { model: 'open', version: '1', runtime: 'remote', urls: [DEAD], health_check: { enabled: false }, fallbacks: ['slowfb-1'], policies: { retry: { attempts: 0 } } },
      { model: 'slowfb', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '3000', '--tokens', '1'] },
    ],
  });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const chat = async (model: string): Promise<{ status: number; ms: number; code: unknown }> => {
    const started = Date.now();
    const r = await httpRequest(`${gw.url}/${model}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }) });
    return { status: r.status, ms: Date.now() - started, code: r.status === 200 ? null : JSON.parse(r.body).error?.code };
  };
  const timed = await chat('budget-1');
  t.equal(timed.status, 504, 'the fallback took it, and the client\'s 1 s still ran out');
  t.equal(timed.code, 'SLUICE_ERR_TOTAL_TIMEOUT');
  t.ok(timed.ms < 2_700, `within the budget and one sweep (${timed.ms} ms), not the fallback's 3 s`);
  const open = await chat('open-1');
  t.equal(open.status, 200, 'without a budget the fallback answers');
  t.ok(open.ms >= 2_900, `after its 3 s (${open.ms} ms)`);
});
