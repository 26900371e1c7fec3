// A client that pipelines requests and reads none of the answers, on the node front end:
// the gateway stops reading that connection's next requests while its answers wait in the
// socket, as nginx and Node's http server do, so that one client cannot make it hold
// answers without bound. A client that pipelines and reads, however slowly, gets every
// answer in order.
// Ports: the gateway and its admin API on port 0; no replicas (26280-26281 reserved for none).

import { connect } from 'node:net';
import t from 'tap';
import { metricsText, sample, sleep, startGateway, type Gateway } from '../helpers/procs.js';

let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 0, front_end: 'node', client_idle_timeout_ms: 30_000 },
    ports: { from: 26280, to: 26281 },
    deployments: [],
  });
});
t.teardown(() => gw?.stop());

// No route: the gateway answers each itself (404), at once, as fast as it reads them.
const REQUEST = Buffer.from('GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n', 'latin1');
const ID_LINE = /\r\nx-request-id: r(\d+)\r\n/;

async function noRouteAnswers(): Promise<number> {
  return sample(await metricsText(gw), 'sluice_gateway_refusals_total', { deployment: '', code: 'SLUICE_ERR_NO_ROUTE' }) ?? 0;
}

/** Polls the count until it has not moved for `quietMs`. */
async function settledAnswers(quietMs: number): Promise<number> {
  let last = await noRouteAnswers();
  for (;;) {
    await sleep(quietMs);
    const now = await noRouteAnswers();
    if (now === last) return now;
    last = now;
  }
}

t.test('a client that sends 100,000 pipelined requests and reads nothing gets a bounded share of them answered', async (t) => {
  const before = await noRouteAnswers();
  const sent = 100_000;
  const socket = connect({ host: '127.0.0.1', port: gw.port });
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.pause();
  socket.on('error', () => undefined);
  let written = 0;
  const pump = (): void => {
    while (written < sent) {
      written++;
      if (!socket.write(REQUEST)) return;
    }
  };
  socket.on('drain', pump);
  pump();
  const answered = (await settledAnswers(1500)) - before;
  // The answers the kernel's buffers hold (a few MB of 404s) and one read's worth more;
  // without the bound, all 100,000 (and the gateway's memory grows with them).
  t.ok(answered < sent / 2, `${answered} of ${sent} answered while the client read none`);
  t.ok(answered > 0, 'the first ones are answered');
  socket.destroy();
});

t.test('a client that pipelines and reads slowly gets every answer, in order', async (t) => {
  const count = 20_000;
  const socket = connect({ host: '127.0.0.1', port: gw.port });
  await new Promise((resolve) => socket.once('connect', resolve));
  let got = '';
  const ids: number[] = [];
  const done = new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed after ${ids.length} answers`)));
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      for (let m = ID_LINE.exec(got); m !== null; m = ID_LINE.exec(got)) {
        ids.push(Number(m[1]));
        got = got.slice(m.index + m[0].length);
      }
      if (ids.length === count) resolve();
      // Slow: the gateway's writes back up between the pauses.
      socket.pause();
      setTimeout(() => socket.resume(), 2);
    });
  });
  socket.write(Buffer.from(Array.from({ length: count }, (_, i) => `GET /nowhere HTTP/1.1\r\nHost: gw\r\nx-request-id: r${i}\r\n\r\n`).join(''), 'latin1'));
  await done;
  t.equal(ids.length, count, 'one answer per request');
  t.ok(ids.every((id, i) => id === i), 'in the order sent');
  socket.destroy();
});
