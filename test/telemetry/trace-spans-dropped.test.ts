// Spans the OTLP exporter could not send are counted: a collector slower than the traffic
// fills the export queue (OTEL_BSP_MAX_QUEUE_SIZE), and every span after it is dropped;
// sluice_trace_spans_total{outcome} says how many were exported, dropped and failed, and
// they add up to the spans the requests made. Through the real gateway, against a collector
// (a node HTTP server answering OTLP's empty success) that holds its answers while told to.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { waitFor } from '../helpers/control.js';
import { httpRequest, metric } from '../helpers/http.js';
import { metricsText, startGateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Model-server ports 22520-22529 belong to this file.
const RANGE = { from: 22520, to: 22529 };

t.test('spans dropped for a full export queue are counted, and the counts add up', async (t) => {
  let holding = false;
  const held: ServerResponse[] = [];
  let exports = 0;
  const answer = (res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  };
  const collector = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      exports++;
      if (holding) held.push(res);
      else answer(res);
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    collector.closeAllConnections();
    collector.close(() => r());
  }));

  const gw = await startGateway({
    ports: RANGE,
    tracing: { enabled: true, endpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces` },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--token-ms', '0', '--ttft-ms', '0'] }],
  }, { OTEL_BSP_MAX_QUEUE_SIZE: '4', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2', OTEL_BSP_SCHEDULE_DELAY: '20', OTEL_EXPORTER_OTLP_TIMEOUT: '20000' });
  t.teardown(() => gw.stop());
  const spans = async (): Promise<{ exported: number; dropped: number; failed: number }> => {
    const text = await metricsText(gw);
    const of = (outcome: string): number => metric(text, 'sluice_trace_spans_total', { outcome });
    return { exported: of('exported'), dropped: of('dropped'), failed: of('failed') };
  };
  const send = async (): Promise<void> => {
    t.equal((await httpRequest(`${gw.url}/demo-1/_sim/echo`)).status, 200);
  };

  t.same(await spans(), { exported: 0, dropped: 0, failed: 0 }, 'nothing yet');
  // How many spans one request makes, with a collector that answers at once.
  await send();
  const perRequest = (await waitFor(async () => {
    const s = await spans();
    return s.exported > 0 ? s : undefined;
  }, 10_000, 'the first request\'s spans to be exported')).exported;
  t.ok(perRequest >= 1, `${perRequest} span(s) per request`);

  // The collector now holds its answers: one batch waits on it, the queue fills, the rest is dropped.
  holding = true;
  const SENT = 40;
  for (let i = 0; i < SENT; i++) await send();
  const whileHeld = await spans();
  t.ok(whileHeld.dropped >= SENT * perRequest - 2 * 4, `spans past the full queue are dropped (${whileHeld.dropped})`);
  t.equal(whileHeld.failed, 0, 'none failed');

  holding = false;
  for (const res of held.splice(0)) answer(res);
  const settled = await waitFor(async () => {
    const s = await spans();
    return s.exported + s.dropped + s.failed === (SENT + 1) * perRequest ? s : undefined;
  }, 20_000, 'every span to be exported or dropped');
  t.ok(settled.exported > perRequest, `those queued were exported once the collector answered (${settled.exported})`);
  t.equal(settled.failed, 0);
  t.ok(exports > 1, `the collector took ${exports} exports`);
  t.match(await metricsText(gw), /# TYPE sluice_trace_spans_total counter\n/);
});
