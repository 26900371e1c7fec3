// Keep-alive clients during a shutdown's drain delay. A balancer stops sending new
// connections once /readyz says 503, but a client on a keep-alive connection (a Kubernetes
// Service keeps those on the pod) moves only when told to. Responses during the delay say
// `connection: close` and end their connections, as nginx's and Envoy's do while draining,
// so that such clients reconnect before the port closes. They used to stay keep-alive, and
// the idle ones were closed when the delay ended, under a client that could be sending its
// next request on them (ECONNRESET, a POST it cannot safely retry).

import { Agent, request } from 'node:http';
import t from 'tap';
import { reapServers, waitFor } from '../helpers/control.js';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 25430-25439 belong to this file: gateway, admin, then the replicas'.
const RANGE = { from: 25432, to: 25439 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  await reapServers([], RANGE);
});

interface Answer {
  status: number;
  connection: string | undefined;
  localPort: number;
  body: string;
}

/** One request on `agent`'s connections; `onChunk` hears the body as it comes. */
function send(agent: Agent, url: string, body?: object, onChunk?: () => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, method: body === undefined ? 'GET' : 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        onChunk?.();
      });
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, localPort: req.socket!.localPort!, body: text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

t.test('responses during the drain delay close their keep-alive connections, as their heads say', async (t) => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 25430 }, admin: { host: '127.0.0.1', port: 25431 }, ports: RANGE,
    shutdown: { drain_delay_ms: 5_000, grace_ms: 1_000 },
    deployments: [{ model: 'chat', version: '1', runtime: 'sim', args: ['--tokens', '20', '--token-ms', '50'] }],
  });
  // One connection at a time: a request waits for the socket of the one before it.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const url = `${gw.url}/chat-1/api/tags`;
  const first = await send(agent, url);
  const second = await send(agent, url);
  t.equal(second.localPort, first.localPort, 'before the shutdown, the connection is kept');
  t.not(second.connection, 'close', 'and said to be kept');

  // A stream whose head said keep-alive before the drain began.
  let streaming!: () => void;
  const started = new Promise<void>((resolve) => { streaming = resolve; });
  const stream = send(agent, `${gw.url}/chat-1/v1/chat/completions`, { model: 'chat', stream: true, messages: [{ role: 'user', content: 'hi' }] }, () => streaming());
  await started;
  gw.child.kill('SIGTERM');
  await waitFor(() => jsonLogs(gw!).some((l) => l.msg === 'draining'), 5_000, 'the drain to begin');
  // Queued behind the stream, it takes the stream's connection the moment the stream ends.
  const queued = send(agent, url);
  const s = await stream;
  t.match(s.body, /\[DONE\]/, 'the stream ends whole');
  t.not(s.connection, 'close', 'its head had said keep-alive');
  const during = await queued;
  t.equal(during.status, 200, 'the request that reused its connection is served, not reset');
  t.equal(during.localPort, s.localPort, 'on that connection');
  t.equal(during.connection, 'close', 'and told to reconnect');
  const next = await send(agent, url);
  t.equal(next.status, 200, 'the next request, on a new connection, is served too');
  t.not(next.localPort, first.localPort, 'which is a new one');
  t.equal(next.connection, 'close', 'and closed after it as well');
  agent.destroy();
});
