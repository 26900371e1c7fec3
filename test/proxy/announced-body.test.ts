// The front door reads a body whole before it routes it (the body's `model` picks the
// deployment), up to limits.max_buffered_body_bytes. A head that announces that much and
// sends nothing more must cost the gateway what it sent, not what it announced: 150 such
// heads made it allocate 150 x 16 MiB at once (2.4 GB of address space, counted against
// the V8 heap's external memory and any strict overcommit). A body that does come, larger
// than the share reserved up front, is still read whole.
// Ports: the gateway and its admin API on port 0; no replicas (26290-26291 reserved for none).

import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

let gw: Gateway;

t.before(async () => {
  gw = await startGateway({ ports: { from: 26290, to: 26291 }, deployments: [] });
});
t.teardown(() => gw?.stop());

/** The process's virtual size in bytes (Linux /proc): what it allocated, touched or not. */
function vmSize(pid: number): number {
  const m = /^VmSize:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmSize for ${pid}`);
  return Number(m[1]) * 1024;
}

t.test('heads that announce 16 MiB bodies and send one byte reserve no 16 MiB each', async (t) => {
  const pid = gw.child.pid!;
  const before = vmSize(pid);
  const heads = 150;
  const announced = 16 * 1024 * 1024 - 1;
  const sockets: Socket[] = [];
  await Promise.all(Array.from({ length: heads }, () => new Promise<void>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: gw.port }, () => {
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${announced}\r\n\r\n{`);
      resolve();
    });
    socket.on('error', () => undefined);
    sockets.push(socket);
  })));
  await sleep(1500);
  const grown = vmSize(pid) - before;
  for (const s of sockets) s.destroy();
  t.ok(grown < 512 * 1024 * 1024, `${(grown / 1048576).toFixed(0)} MiB more for ${heads} heads (announced: ${(heads * announced / 1048576).toFixed(0)} MiB)`);
});

t.test('a 3 MiB body with its model at the end is read whole', async (t) => {
  const body = `{"messages":[{"role":"user","content":"${'a'.repeat(3 * 1024 * 1024)}"}],"model":"at-the-end"}`;
  const r = await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  t.equal(r.status, 404, 'routed by the model found after 3 MiB');
  t.match(r.body, /The model 'at-the-end' does not exist/);
});
