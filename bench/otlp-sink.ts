// The OTLP/HTTP receiver of the traced sluice instance: takes every export and answers it
// as a collector does (200, an empty ExportTraceServiceResponse: zero protobuf bytes), so
// that the row prices what sluice spends on its spans, not a collector's speed.
//
//   node dist-bench/otlp-sink.js --port N

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' } }, strict: true });
const port = Number(values.port);
if (!(port > 0)) throw new Error('usage: otlp-sink --port N');

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(req.method === 'POST' && req.url === '/v1/traces' ? 200 : 404, { 'content-type': 'application/x-protobuf', 'content-length': '0' });
    res.end();
  });
});
server.keepAliveTimeout = 300_000;
server.listen(port, '127.0.0.1', () => console.log(JSON.stringify({ event: 'listening', port })));
