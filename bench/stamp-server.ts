// An SSE upstream for the chunk-latency section: every stream sends `data: {"t":<µs>}` every
// --chunk-ms, where t is the monotonic clock (process.hrtime, the same clock for every
// process on the machine) at the moment of the write. A client reading the chunk through a
// proxy subtracts t from its own clock: the time the chunk spent on the way.
//
//   node dist-bench/stamp-server.js --port N [--chunk-ms 50] [--chunks 1200]

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { nowUs } from './lib/chunk-latency.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'chunk-ms': { type: 'string', default: '50' },
    chunks: { type: 'string', default: '1200' },
  },
  strict: true,
});
const port = Number(values.port);
const chunkMs = Number(values['chunk-ms']);
const chunks = Number(values.chunks);
if (!(port > 0) || !(chunkMs > 0) || !(chunks > 0)) throw new Error('usage: stamp-server --port N [--chunk-ms MS] [--chunks N]');

const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let sent = 0;
  const timer = setInterval(() => {
    if (sent++ === chunks) {
      clearInterval(timer);
      res.end('data: [DONE]\n\n');
      return;
    }
    res.write(`data: {"t":${nowUs()}}\n\n`);
  }, chunkMs);
  res.on('close', () => clearInterval(timer));
});
server.keepAliveTimeout = 300_000;
server.listen(port, '127.0.0.1', () => console.log(JSON.stringify({ event: 'listening', port })));
