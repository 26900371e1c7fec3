// An undeployed version's servers stop only once every data-plane worker routes without it.
// The control plane publishes the new route table and then drains the version's replicas;
// their in-flight counts say nothing while a worker has not yet read that table, since the
// worker may still pick them. Here a worker is held inside a request's handling, before it
// picks a replica (a breakpoint through the inspector, so nothing in sluice is changed for
// the test): the request it holds must still reach the version's server, and the server
// must still run while the worker takes its time, up to the undeploy's grace; a worker that
// has exited is not waited for.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { adminClient, gwRequest, pidAlive, PidLog, reapServers, serverCommand, sleep, waitFor, writeServerScript, type GwReply } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 19140-19149 belong to this file.
const RANGE = { from: 19140, to: 19149 };
const pids = new PidLog();
let gw: Gateway | undefined;
let insp: WorkerInspector | undefined;

t.teardown(async () => {
  insp?.close();
  await gw?.stop('SIGKILL');
  await reapServers(pids.pids, RANGE);
});

/** The gateway's request handler in the build the tests run: the breakpoint goes on its first statement. */
const GATEWAY_JS = fileURLToPath(new URL('../../dist/proxy/gateway.js', import.meta.url));

function handlerFirstLine(): number {
  const lines = readFileSync(GATEWAY_JS, 'utf8').split('\n');
  const at = lines.findIndex((l) => /^\s*#handle\(res, req, method\) \{$/.test(l));
  if (at < 0) throw new Error(`no "#handle(res, req, method) {" line in ${GATEWAY_JS}: this test needs a new breakpoint`);
  return at + 1;
}

interface InspectorMessage {
  id?: number;
  method?: string;
  params?: Record<string, any>;
  result?: Record<string, any>;
  error?: { message: string };
}

/** The gateway process's inspector, speaking to its first data-plane worker. */
class WorkerInspector {
  readonly #ws: WebSocket;
  #seq = 0;
  #workerSeq = 0;
  readonly #replies = new Map<number, (m: InspectorMessage) => void>();
  readonly #workerReplies = new Map<number, (m: InspectorMessage) => void>();
  readonly #workerEvents: InspectorMessage[] = [];
  #session = '';

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as InspectorMessage;
      if (m.id !== undefined) this.#replies.get(m.id)?.(m);
      // Other workers may run in the process (Node's module loader hooks): the data plane's runs dist/proxy/worker.js.
      else if (m.method === 'NodeWorker.attachedToWorker' && /\/dist\/proxy\/worker\.js$/.test(m.params!.workerInfo.url as string)) this.#session = m.params!.sessionId as string;
      else if (m.method === 'NodeWorker.receivedMessageFromWorker') {
        const w = JSON.parse(m.params!.message as string) as InspectorMessage;
        if (w.id !== undefined) this.#workerReplies.get(w.id)?.(w);
        else this.#workerEvents.push(w);
      }
    });
  }

  static async attach(url: string): Promise<WorkerInspector> {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const insp = new WorkerInspector(ws);
    await insp.#send('NodeWorker.enable', { waitForDebuggerOnStart: false });
    await waitFor(() => insp.#session !== '', 10_000, 'the inspector to attach to the worker');
    return insp;
  }

  #send(method: string, params: Record<string, unknown> = {}): Promise<InspectorMessage> {
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#replies.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m)));
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Sends a command to the worker and waits for its answer. */
  worker(method: string, params: Record<string, unknown> = {}): Promise<InspectorMessage> {
    const id = this.send(method, params);
    return new Promise<InspectorMessage>((resolve, reject) => {
      this.#workerReplies.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m)));
    });
  }

  /** Sends a command to the worker without waiting for an answer; its id. */
  send(method: string, params: Record<string, unknown> = {}): number {
    const id = ++this.#workerSeq;
    void this.#send('NodeWorker.sendMessageToWorker', { sessionId: this.#session, message: JSON.stringify({ id, method, params }) });
    return id;
  }

  /** The worker's events so far named `method`. */
  events(method: string): InspectorMessage[] {
    return this.#workerEvents.filter((e) => e.method === method);
  }

  close(): void {
    this.#ws.close();
  }
}

/** Deploys `handover-<version>` (the stand-in server) and waits until it is ready; its server's pid. */
async function deploy(t: Test, version: string): Promise<number> {
  const d = await adminClient(gw!.adminUrl).post('/v1/deployments?wait=true', {
    model: 'handover', version, runtime: 'command', command: serverCommand(script!, 'ok'), readiness_path: '/ping', start_timeout_ms: 20_000,
  });
  pids.note(d.body);
  t.equal(d.status, 201, d.text.slice(0, 300));
  return d.body.replicas[0].pid as number;
}

/** Sends a request the worker stops on at its handler's first statement; resolves once it has stopped there (with the reply to come). */
async function holdInWorker(t: Test, path: string): Promise<{ reply: Promise<GwReply> }> {
  const paused = insp!.events('Debugger.paused').length;
  const bp = await insp!.worker('Debugger.setBreakpointByUrl', { urlRegex: 'dist/proxy/gateway\\.js$', lineNumber: handlerFirstLine() });
  t.equal(bp.result!.locations.length, 1, 'a breakpoint in the worker\'s request handler');
  const reply = gwRequest(`${gw!.url}${path}`, { timeoutMs: 30_000 });
  await waitFor(() => insp!.events('Debugger.paused').length > paused, 10_000, 'the worker to stop in the handler');
  await insp!.worker('Debugger.removeBreakpoint', { breakpointId: bp.result!.breakpointId });
  return { reply };
}

let script: string | undefined;

t.before(async () => {
  gw = await startGateway({ ports: RANGE, workers: 1 }, { NODE_OPTIONS: '--inspect=127.0.0.1:0' }, false);
  script = writeServerScript(t.testdir());
  const url = gw.stderr.map((l) => /Debugger listening on (ws:\S+)/.exec(l)?.[1]).find((u) => u !== undefined);
  if (url === undefined) throw new Error(`the gateway has no inspector: ${gw.stderr.slice(0, 5).join(' | ')}`);
  insp = await WorkerInspector.attach(url);
  await insp.worker('Debugger.enable');
});

t.test('a request a worker took before it read the undeploy still reaches the version, whose server waits for that worker', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  const server = await deploy(t, '1');
  t.equal((await gwRequest(`${gw!.url}/handover-1/ping`)).json.pid, server, 'the route serves');

  // Held at the handler's first statement: the worker will route it by the table it has now.
  const held = await holdInWorker(t, '/handover-1/ping');
  let undeployed = false;
  const undeploy = admin.del('/v1/deployments/handover-1?grace_ms=20000').then((r) => {
    undeployed = true;
    return r;
  });
  await sleep(1_500);
  t.notOk(undeployed, 'the undeploy waits while the worker has not read the new route table');
  t.ok(pidAlive(server), 'and the version\'s server still runs');

  await insp!.worker('Debugger.resume');
  const reply = await held.reply;
  t.equal(reply.status, 200, `the held request is answered by the version it was routed to: ${reply.status} ${reply.text.slice(0, 200)}`);
  t.equal(reply.json?.pid, server, 'by its server');
  t.equal((await undeploy).status, 200, 'then the undeploy ends');
  await waitFor(() => !pidAlive(server), 10_000, 'the server to stop');
  t.equal((await gwRequest(`${gw!.url}/handover-1/ping`)).status, 404, 'and the route is gone');
});

t.test('a worker that does not answer holds an undeploy no longer than its grace', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  const server = await deploy(t, '2');
  const held = await holdInWorker(t, '/handover-2/ping');
  const t0 = performance.now();
  const r = await admin.del('/v1/deployments/handover-2?grace_ms=1000');
  const took = performance.now() - t0;
  t.equal(r.status, 200, 'the undeploy ends while the worker is still stopped');
  t.ok(took >= 900 && took < 8_000, `after its 1 s grace and the server's stop (${Math.round(took)} ms)`);
  t.notOk(pidAlive(server), 'the server is stopped');
  await insp!.worker('Debugger.resume');
  const reply = await held.reply;
  t.equal(reply.status, 502, `the request the worker held past the grace finds no server: ${reply.text.slice(0, 200)}`);
  t.equal(reply.json?.error?.code, 'SLUICE_ERR_UPSTREAM_CONNECT');
  t.match(reply.json?.error?.request_id, /^[0-9a-f-]{36}$/, 'with a request id');
});

t.test('a worker that exited holds no undeploy', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  const server = await deploy(t, '3');
  // The only worker ends (as an uncaught error would end it); the admin API goes on.
  insp!.send('Runtime.evaluate', { expression: 'process.exit(3)' });
  await waitFor(() => gw!.lines.some((l) => l.includes('data-plane worker exited unexpectedly')), 10_000, 'the worker to exit');
  const t0 = performance.now();
  const r = await admin.del('/v1/deployments/handover-3?grace_ms=20000');
  const took = performance.now() - t0;
  t.equal(r.status, 200, 'the undeploy ends');
  t.ok(took < 8_000, `without waiting out its 20 s grace for the exited worker (${Math.round(took)} ms)`);
  t.notOk(pidAlive(server), 'the server is stopped');
});
