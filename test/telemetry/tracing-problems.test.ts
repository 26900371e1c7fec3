// The OpenTelemetry SDK's problems (here: exports to a collector that is down) are logged
// as every other error of the log: `err` an object ({type, message, stack}), not a string
// holding JSON; and without the endpoint's password or query key.

import t from 'tap';
import { waitFor } from '../helpers/control.js';
import { httpRequest, metric } from '../helpers/http.js';
import { jsonLogs, metricsText, startGateway } from '../helpers/procs.js';

// Ports 19750-19759 belong to this file: 19750 the gateway, 19751 its admin API, 19752 a
// collector port where nothing listens, 19753-19759 the simulators.
const COLLECTOR_PORT = 19752;
const PROBLEM = 'tracing: the OpenTelemetry SDK reports a problem';

t.test('an export that fails is logged with its error as an object', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19750 },
    admin: { host: '127.0.0.1', port: 19751 },
    ports: { from: 19753, to: 19759 },
    tracing: { enabled: true, endpoint: `http://otel:pw-SECRET@127.0.0.1:${COLLECTOR_PORT}/v1/traces?api_key=KEY-SECRET` },
    dependencies: { otlp: { export: { volume_threshold: 2 } } },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--token-ms', '0', '--ttft-ms', '0'] }],
  }, { OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_EXPORTER_OTLP_TIMEOUT: '300' });
  try {
    // The export breaker opens once exports have failed: by then the SDK has reported them.
    await waitFor(async () => {
      t.equal((await httpRequest(`${gw.url}/demo-1/_sim/echo`)).status, 200, 'answered whatever the collector does');
      return metric(await metricsText(gw), 'sluice_dependency_breaker_state', { dependency: 'otlp', use: 'export' }) === 1;
    }, 20_000, 'exports to fail and the otlp export breaker to open');
  } finally {
    t.equal(await gw.stop(), 0);
  }
  // Workers' log lines are buffered: read once the gateway has stopped.
  const problems = jsonLogs(gw).filter((l) => l.msg === PROBLEM);
  t.ok(problems.length > 0, 'the failed exports were reported');
  for (const p of problems) {
    const err = p.err as Record<string, unknown> | undefined;
    t.type(err, 'object', `err is an object: ${JSON.stringify(p)}`);
    t.type(err?.type, 'string', 'with its type');
    t.type(err?.message, 'string', 'its message');
    t.type(err?.stack, 'string', 'and its stack');
    t.notOk(typeof p.detail === 'string' && p.detail.startsWith('{'), 'no JSON in a string');
  }
  t.ok(problems.some((p) => /ECONNREFUSED/.test(String((p.err as { message?: unknown }).message))), 'the refused connection is named');
  t.notMatch(gw.lines.join('\n'), /pw-SECRET|KEY-SECRET/, 'the endpoint\'s secrets are in no log line');
});
