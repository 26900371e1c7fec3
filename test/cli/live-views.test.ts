// The CLI's live views in a real terminal (tmux): `sluice logs -f` prints each new line of
// the model servers once and stops on Ctrl-C; `sluice top` redraws its table per deployment
// from GET /v1/stats and quits on q. Off a terminal, `top` prints one snapshot.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, gwRequest, PidLog, reapServers, serverCommand, writeServerScript, type AdminClient } from '../helpers/control.js';
import { runCli, sh, Tmux } from '../helpers/cli.js';
import { CLI, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19010-19019 belong to this file.
const RANGE = { from: 19010, to: 19019 };
const TOKEN = 'cli-live-admin-token-81c3';

let gw: Gateway;
let admin: AdminClient;
const pids = new PidLog();
const tmux = new Tmux('sluice-cli-live');
let script: string;

t.before(async () => {
  gw = await startGateway({ ports: RANGE, admin: { host: '127.0.0.1', port: 0, token: TOKEN } }, {}, false);
  admin = adminClient(gw.adminUrl, TOKEN);
  script = writeServerScript(t.testdir());
  const made = await admin.post('/v1/deployments?wait=true', { model: 'echo', version: '1', runtime: 'command', command: serverCommand(script, 'ok'), readiness_path: '/ping' });
  if (made.status !== 201) throw new Error(`deploy echo-1: ${made.status} ${made.text}`);
  const sim = await admin.post('/v1/deployments?wait=true', { model: 'chat', version: '1', runtime: 'sim', args: ['--tokens', '5', '--ttft-ms', '5', '--token-ms', '1'] });
  if (sim.status !== 201) throw new Error(`deploy chat-1: ${sim.status} ${sim.text}`);
  pids.note(await admin.list());
});
t.teardown(async () => {
  tmux.kill();
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

/** The CLI as a shell line for tmux, with the admin URL and token in its environment. */
const cliLine = (...args: string[]): string =>
  `env SLUICE_ADMIN_URL=${sh(gw.adminUrl)} SLUICE_ADMIN_TOKEN=${sh(TOKEN)} ${sh(process.execPath)} ${sh(CLI)} ${args.map(sh).join(' ')}`;

const count = (screen: string, re: RegExp): number => screen.split('\n').filter((l) => re.test(l)).length;

t.test('logs -f prints new lines once each, as they come, until Ctrl-C', async (t) => {
  tmux.start('logs', cliLine('logs', 'echo-1', '-f', '--interval', '200'));
  await tmux.waitFor('logs', (s) => /echo-1\/0 listening on 190\d\d/.test(s), 15_000, 'the server\'s start-up lines');
  t.equal((await gwRequest(`${gw.url}/echo-1/log/first`)).status, 200);
  await tmux.waitFor('logs', (s) => s.includes('request /log/first'), 10_000, 'the first request\'s line');
  t.equal((await gwRequest(`${gw.url}/echo-1/log/second`)).status, 200);
  t.equal((await gwRequest(`${gw.url}/echo-1/log/third`)).status, 200);
  const screen = await tmux.waitFor('logs', (s) => s.includes('request /log/third'), 10_000, 'the later requests\' lines');
  t.equal(count(screen, /request \/log\/first$/), 1, 'a line is printed once, however many polls see it');
  t.equal(count(screen, /request \/log\/second$/), 1);
  t.equal(count(screen, /listening on/), 1);
  t.ok(screen.indexOf('/log/first') < screen.indexOf('/log/second') && screen.indexOf('/log/second') < screen.indexOf('/log/third'), 'in order');
  tmux.keys('logs', 'C-c');
  const end = await tmux.waitFor('logs', (s) => /EXIT=\d+/.test(s), 10_000, 'logs -f to stop on Ctrl-C');
  t.match(end, /EXIT=130/, 'stopped by the interrupt');
});

t.test('deploy --wait on a terminal: a spinner with the state while it starts, a mark when ready', async (t) => {
  // The spinner's frames are recorded: a loaded machine's screen captures can miss the 2 s it spins.
  const recording = join(mkdtempSync(join(tmpdir(), 'sluice-cli-')), 'deploy.typescript');
  // Without CI: nanospinner draws no frames when CI is set (as the CI runner sets it), a user's terminal has none.
  tmux.start('deploy', 'env -u CI ' + cliLine('deploy', 'slow', '1', '--runtime', 'command', '--readiness-path', '/ping', '--wait', '--', ...serverCommand(script, 'slow', '2000')), recording);
  const end = await tmux.waitFor('deploy', (s) => /EXIT=\d+/.test(s), 30_000, 'deploy --wait to end');
  const frames = readFileSync(recording, 'utf8').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  const starting = frames.search(/slow-1 (pending|starting), 0\/[01] replicas ready/);
  t.ok(starting >= 0, `the spinner showed the state while the deployment started: ${frames.slice(-1200)}`);
  t.ok(starting < frames.search(/slow-1 ready, 1\/1/), 'before the mark');
  pids.note(await admin.list());
  t.match(end, /[✔√] slow-1 ready, 1\/1 replicas ready \(\d+ s\)/, 'the spinner ends in a mark');
  t.match(end, /^slow-1 is ready: 1\/1 replicas ready, ports 190\d\d, route \/slow-1\/$/m);
  t.match(end, /EXIT=0/);
  t.equal((await admin.del('/v1/deployments/slow-1?grace_ms=0')).status, 200);
});

t.test('colour on a terminal, none with NO_COLOR', async (t) => {
  // tap runs its tests with NO_COLOR set: a user's terminal usually has none.
  tmux.start('color', `env -u NO_COLOR ${cliLine('ls')}`);
  const colored = await tmux.waitFor('color', (s) => /EXIT=0/.test(s), 10_000, 'ls on a terminal');
  t.match(tmux.capture('color', true), /\x1b\[32mready/, 'ready in green');
  t.match(colored, /^echo-1\s+echo\s+1\s+command\s+ready\s+1\/1/m);
  tmux.start('plain', `NO_COLOR=1 ${cliLine('ls')}`);
  await tmux.waitFor('plain', (s) => /EXIT=0/.test(s), 10_000, 'ls with NO_COLOR');
  t.notMatch(tmux.capture('plain', true), /\x1b\[3\dm/, 'no colour sequence');
});

/** Requests to chat-1 in the background until stopped, so that top has rates to show. */
function load(): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      await gwRequest(`${gw.url}/chat-1/api/generate`, { body: { model: 'chat', prompt: 'hi', stream: false } });
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

t.test('top redraws a table per deployment every interval and quits on q', async (t) => {
  const traffic = load();
  try {
    tmux.start('top', cliLine('top', '--interval', '0.5'));
    const first = await tmux.waitFor('top', (s) => /^chat-1\s+ready\s+\d/m.test(s), 15_000, 'top\'s first table');
    t.match(first, /^DEPLOYMENT\s+STATE\s+RPS\s+ERR%\s+P99 MS\s+TTFT P50\s+TTFT P99\s+TOK\/S\s+IN FLIGHT\s+QUEUED$/m);
    t.match(first, /^echo-1\s+ready\s+0\.0\s+-\s/m, 'a deployment without requests: no rate, no error rate');
    const at = /(\d{4}-\d\d-\d\dT\S+Z)/.exec(first)![1];
    // Redrawn: a later snapshot time, and chat-1's rates from the load.
    const later = await tmux.waitFor('top', (s) => {
      const now = /(\d{4}-\d\d-\d\dT\S+Z)/.exec(s)?.[1];
      return now !== undefined && now !== at && /^chat-1\s+ready\s+[1-9]\d*\.\d\s+0\.0%\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[1-9]/m.test(s);
    }, 15_000, 'a redraw with chat-1\'s requests and tokens per second');
    t.match(later, /q to quit/);
  } finally {
    await traffic.stop();
  }
  tmux.keys('top', 'q');
  const end = await tmux.waitFor('top', (s) => /EXIT=\d+/.test(s), 10_000, 'top to quit on q');
  t.match(end, /EXIT=0/);
  t.notMatch(end, /DEPLOYMENT\s+STATE/, 'the terminal is given back (alternate screen left)');
});

t.test('top off a terminal prints one snapshot after two polls; --json has the documented shape', async (t) => {
  const env = { SLUICE_ADMIN_URL: gw.adminUrl, SLUICE_ADMIN_TOKEN: TOKEN };
  const traffic = load();
  try {
    const r = await runCli(['top', '--interval', '1'], env);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^DEPLOYMENT\s+STATE\s+RPS/m);
    t.match(r.stdout, /^chat-1\s+ready\s+[1-9]\d*\.\d\s/m, 'chat-1 with its request rate');
    const j = await runCli(['top', '--once', '--interval', '1', '--json'], env);
    t.equal(j.code, 0, j.stderr);
    const body = JSON.parse(j.stdout);
    t.equal(body.interval_s, 1);
    const chat = body.deployments.find((d: any) => d.deployment === 'chat-1');
    t.match(chat, { model: 'chat', version: '1', state: 'ready', error_rate: 0, in_flight: Number, queued: Number });
    t.ok(chat.rps > 0, 'rps from two polls');
    t.ok(chat.output_tokens_per_s > 0, 'tokens per second from two polls');
    t.type(chat.p99_ms, 'number');
    t.type(chat.ttft_p99_ms, 'number');
  } finally {
    await traffic.stop();
  }
  const wrong = await runCli(['top', '--once'], { SLUICE_ADMIN_URL: gw.adminUrl, SLUICE_ADMIN_TOKEN: 'nope' });
  t.equal(wrong.code, 4);
});

