// The admin commands of the `sluice` CLI, run as a user runs them (node dist/cli.js, a child
// process) against a real gateway whose admin API needs a token: exit statuses, tables,
// --json, and the messages on stderr.

import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { gwRequest, PidLog, reapServers, serverCommand, writeServerScript } from '../helpers/control.js';
import { runCli, type CliRun } from '../helpers/cli.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19000-19008 belong to this file; nothing listens on 19009 (the unreachable URL).
const RANGE = { from: 19000, to: 19008 };
const NOBODY = 'http://127.0.0.1:19009';
const TOKEN = 'cli-test-admin-token-5f2a';

let gw: Gateway;
const pids = new PidLog();
let env: Record<string, string>;
const sluice = (...args: string[]): Promise<CliRun> => runCli(args, env);
const json = (r: CliRun): any => JSON.parse(r.stdout);

t.before(async () => {
  gw = await startGateway({ ports: RANGE, admin: { host: '127.0.0.1', port: 0, token: TOKEN } }, {}, false);
  env = { SLUICE_ADMIN_URL: gw.adminUrl, SLUICE_ADMIN_TOKEN: TOKEN };
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

/** Notes the replicas' pids for the teardown, from the deployment's JSON view. */
async function notePids(id: string): Promise<void> {
  const r = await sluice('status', id, '--json');
  if (r.code === 0) pids.note(json(r));
}

t.test('usage errors exit 2 with a message naming what is wrong, before any request', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['bogus'], /unknown command 'bogus'/],
    [['ls', '--nope'], /unknown option '--nope'/],
    [['deploy', 'demo', '1', '--replicas', 'two'], /--replicas must be an integer >= 1/],
    [['deploy'], /deploy needs a model and a version/],
    [['deploy', 'demo', '1', '--runtime', 'teleport'], /Allowed choices are sim, remote, command/],
    [['deploy', 'demo', '1', '--', 'python3', '-m', 'http.server'], /only for --runtime command/],
    [['deploy', '-f', '/nonexistent/spec.yaml'], /cannot read \/nonexistent\/spec.yaml: ENOENT/],
    [['traffic', 'demo', '1=ninety'], /'1=ninety' is not version=weight/],
    [['rollout', 'demo', 'start'], /rollout start needs --canary/],
    [['rollout', 'demo', 'launch'], /Allowed choices are start, status, abort/],
    [['status'], /missing required argument 'id'/],
    [['keys'], /Usage: sluice keys/],
    [['ls', '--admin-url', 'not a url'], /--admin-url: 'not a url' is not a URL/],
  ];
  for (const [args, message] of cases) {
    // An unreachable admin URL: a usage error must be found before any request is tried.
    const r = await runCli(args, { SLUICE_ADMIN_URL: NOBODY });
    t.equal(r.code, 2, `sluice ${args.join(' ')}: exit 2`);
    t.match(r.stderr, message, `sluice ${args.join(' ')}: says why`);
    t.equal(r.stdout, '', `sluice ${args.join(' ')}: nothing on stdout`);
  }
});

t.test('--help on every command says what it does and exits 0', async (t) => {
  const top = await runCli(['--help']);
  t.equal(top.code, 0);
  for (const c of ['deploy', 'undeploy', 'ls', 'status', 'logs', 'traffic', 'promote', 'rollback', 'rollout', 'keys', 'costs', 'top', 'serve', 'sim', 'node-flags']) {
    t.match(top.stdout, new RegExp(`^  ${c}\\b`, 'm'), `sluice --help lists ${c}`);
  }
  t.match(top.stdout, /SLUICE_ADMIN_URL/);
  t.match(top.stdout, /Exit status:[\s\S]*3  no admin API answered/);
  const commands = [['deploy'], ['undeploy'], ['ls'], ['status'], ['logs'], ['traffic'], ['promote'], ['rollback'], ['rollout'], ['keys'], ['keys', 'ls'], ['keys', 'add'], ['keys', 'rm'], ['costs'], ['top']];
  for (const c of commands) {
    const r = await runCli([...c, '--help']);
    t.equal(r.code, 0, `sluice ${c.join(' ')} --help: exit 0`);
    t.match(r.stdout, new RegExp(`Usage: sluice ${c.join(' ')}`), `sluice ${c.join(' ')} --help: usage line`);
    t.match(r.stdout, /--admin-url/, `sluice ${c.join(' ')} --help: shows the global options`);
  }
  t.equal((await runCli([])).code, 0, 'sluice alone prints the help');
});

t.test('an admin URL where nothing listens: exit 3, naming the URL and how to set it', async (t) => {
  for (const args of [['ls'], ['ls', '--admin-url', NOBODY]]) {
    const r = await runCli(args, { SLUICE_ADMIN_URL: NOBODY });
    t.equal(r.code, 3);
    t.match(r.stderr, /cannot reach the admin API at http:\/\/127\.0\.0\.1:19009: ECONNREFUSED/);
    t.match(r.stderr, /SLUICE_ADMIN_URL/);
  }
});

t.test('a URL where something else answers (the gateway port, a web server): exit 3, saying it is not the admin API', async (t) => {
  // Port 19275 (of the range 19260-19279) is this test's web server.
  const web = createServer((req, res) => {
    res.writeHead(req.url === '/v1/keys' ? 200 : 404, { 'content-type': 'text/html' });
    res.end('<html><body>not here</body></html>');
  });
  await new Promise<void>((resolve) => web.listen(19275, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => web.close(() => resolve())));
  const cases: Array<[string, string[], RegExp]> = [
    [gw.url, ['ls'], /GET \/v1\/deployments answered 404 with SLUICE_ERR_NO_ROUTE \(this looks like sluice's gateway port/],
    [gw.url, ['keys', 'ls'], /GET \/v1\/keys answered 404 with SLUICE_ERR_NO_ROUTE/],
    [gw.url, ['traffic'], /GET \/v1\/models answered 200 with JSON of another shape/],
    [gw.url, ['promote', 'demo', '1'], /POST \/v1\/models\/demo\/promote answered 405 with SLUICE_ERR_METHOD_NOT_ALLOWED/],
    ['http://127.0.0.1:19275', ['ls'], /GET \/v1\/deployments answered 404 with text\/html, not JSON/],
    ['http://127.0.0.1:19275', ['keys', 'ls'], /GET \/v1\/keys answered 200 with text\/html, not JSON/],
  ];
  for (const [url, args, why] of cases) {
    const r = await runCli(args, { SLUICE_ADMIN_URL: url, SLUICE_ADMIN_TOKEN: TOKEN });
    t.equal(r.code, 3, `${url} ${args.join(' ')}: exit 3`);
    t.match(r.stderr, new RegExp(`${url.replace(/[.]/g, '\\.')} is not sluice's admin API`), `${url} ${args.join(' ')}: says so`);
    t.match(r.stderr, why, `${url} ${args.join(' ')}: says what answered`);
    t.notMatch(r.stderr + r.stdout, new RegExp(TOKEN), 'the token is not in the output');
  }
});

t.test('the admin token: none or a wrong one exits 4, the flag wins over the variable, and it is never printed', async (t) => {
  const none = await runCli(['ls'], { SLUICE_ADMIN_URL: gw.adminUrl });
  t.equal(none.code, 4);
  t.match(none.stderr, /needs an admin token: set --token or SLUICE_ADMIN_TOKEN/);
  const wrong = await runCli(['ls'], { SLUICE_ADMIN_URL: gw.adminUrl, SLUICE_ADMIN_TOKEN: 'wrong-token-value' });
  t.equal(wrong.code, 4);
  t.match(wrong.stderr, /token given .* is not the gateway's/);
  t.notMatch(wrong.stderr + wrong.stdout, /wrong-token-value/, 'the token is not in the output');
  const flag = await runCli(['ls', '--token', TOKEN, '--admin-url', gw.adminUrl], { SLUICE_ADMIN_URL: NOBODY, SLUICE_ADMIN_TOKEN: 'wrong-token-value' });
  t.equal(flag.code, 0, 'flags win over the environment');
  const flagWrong = await runCli(['ls', '--token', 'another-wrong-one', '--admin-url', gw.adminUrl]);
  t.equal(flagWrong.code, 4);
  t.notMatch(flagWrong.stderr, /another-wrong-one/);
});

t.test('deploy --wait: progress on stderr until ready, then ls and status show it', async (t) => {
  const r = await sluice('deploy', 'demo', '1', '--runtime', 'sim', '--replicas', '2', '--wait', '--timeout', '60');
  await notePids('demo-1');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^demo-1 is ready: 2\/2 replicas ready, ports 190\d\d, 190\d\d, route \/demo-1\/$/m);
  t.match(r.stderr, /demo-1 (starting|pending), 0\/2 replicas ready/, 'progress while it starts (a line per change off a terminal)');
  t.match(r.stderr, /demo-1 ready, 2\/2 replicas ready/);

  const ls = await sluice('ls');
  t.equal(ls.code, 0);
  const lines = ls.stdout.trim().split('\n');
  t.match(lines[0], /^ID\s+MODEL\s+VERSION\s+RUNTIME\s+STATE\s+READY\s+PORTS\s+SOURCE$/);
  t.match(ls.stdout, /^demo-1\s+demo\s+1\s+sim\s+ready\s+2\/2\s+190\d\d,190\d\d\s+api$/m);
  const lsJson = json(await sluice('ls', '--json'));
  t.same(lsJson.deployments.map((d: any) => [d.id, d.state, d.replicas.length]), [['demo-1', 'ready', 2]], 'ls --json is the API\'s list');

  const status = await sluice('status', 'demo-1');
  t.equal(status.code, 0);
  t.match(status.stdout, /^state:\s+ready$/m);
  t.match(status.stdout, /^replicas:\s+2\/2 ready$/m);
  t.match(status.stdout, /^REPLICA\s+PORT\s+PID\s+STATE\s+RESTARTS\s+BREAKER\s+HEALTH\s+LAST ERROR$/m);
  const view = json(await sluice('status', 'demo-1', '--json'));
  for (const rep of view.replicas) {
    t.match(status.stdout, new RegExp(`^${rep.id}\\s+${rep.port}\\s+${rep.pid}\\s+ready\\s+0\\s+closed\\s+-\\s+-$`, 'm'), `replica ${rep.id}: port, pid, state, restarts, breaker`);
  }
  t.equal(view.id, 'demo-1');

  const missing = await sluice('status', 'nope-1');
  t.equal(missing.code, 1, 'an API error exits 1');
  t.match(missing.stderr, /404 SLUICE_ERR_NOT_FOUND: no deployment 'nope-1'/);
});

t.test('deploy from a spec file, flags over it; --json prints the ready view', async (t) => {
  const spec = join(t.testdir(), 'spec.yaml');
  writeFileSync(spec, 'model: demo\nversion: 2\nruntime: sim\nreplicas: 3\nargs: ["--tokens", "3"]\ncost: { per_request: 0.01 }\n');
  const r = await sluice('deploy', '-f', spec, '--replicas', '1', '--wait', '--json');
  await notePids('demo-2');
  t.equal(r.code, 0, r.stderr);
  const view = json(r);
  t.equal(view.id, 'demo-2');
  t.equal(view.state, 'ready');
  t.equal(view.replicas.length, 1, '--replicas wins over the file');
});

t.test('a deploy that fails: --wait exits 1 with the server\'s last error', async (t) => {
  const script = writeServerScript(t.testdir());
  const r = await sluice('deploy', 'broken', '1', '--runtime', 'command', '--readiness-path', '/ping', '--start-timeout', '20000', '--wait', '--', ...serverCommand(script, 'exit'));
  t.equal(r.code, 1);
  t.match(r.stderr, /deployment broken-1 failed: .*exited with code 3/);
  t.match(r.stderr, /fatal: model weights not found at \/nowhere\/iris/);
  const logs = await sluice('logs', 'broken-1');
  t.equal(logs.code, 0);
  t.match(logs.stdout, /^broken-1\/0 fatal: model weights not found at \/nowhere\/iris$/m, 'logs shows its output');
  t.equal((await sluice('undeploy', 'broken-1')).code, 0);
});

t.test('logs: the replicas\' recent lines, --tail, --json', async (t) => {
  const r = await sluice('logs', 'demo-1');
  t.equal(r.code, 0);
  t.match(r.stdout, /^demo-1\/0 \{"event":"listening","port":190\d\d/m);
  t.match(r.stdout, /^demo-1\/1 \{"event":"listening","port":190\d\d/m);
  const one = await sluice('logs', 'demo-1', '--tail', '1', '--json');
  const body = json(one);
  t.equal(body.id, 'demo-1');
  t.equal(body.lines.length, 1);
  t.match(body.lines[0], { replica: /^demo-1\/\d$/, stream: 'stdout', line: /listening/ });
});

t.test('traffic: show, set (sticky kept unless told), promote and rollback', async (t) => {
  const all = await sluice('traffic');
  t.equal(all.code, 0);
  t.match(all.stdout, /^demo\s+1,2\s+newest ready\s+-\s+-\s+-$/m, 'every model, weights not set yet');

  const set = await sluice('traffic', 'demo', '1=90', '2=10', '--sticky', 'header:x-user');
  t.equal(set.code, 0, set.stderr);
  t.match(set.stdout, /^1\s+demo-1\s+ready\s+2\s+90\s+90\.0%$/m);
  t.match(set.stdout, /^2\s+demo-2\s+ready\s+1\s+10\s+10\.0%$/m);
  t.match(set.stdout, /^sticky:\s+header x-user$/m);

  const again = json(await sluice('traffic', 'demo', '1=70', '2=30', '--json'));
  t.same(again.weights, { 1: 70, 2: 30 });
  t.same(again.sticky, { by: 'header', name: 'x-user' }, 'setting weights keeps the sticky rule');

  // Traffic follows: requests to the alias reach both versions.
  const served = new Set<string>();
  for (let i = 0; i < 40 && served.size < 2; i++) {
    const res = await gwRequest(`${gw.url}/demo/api/tags`, { headers: { 'x-user': `user-${i}` } });
    served.add(String(res.headers['x-sluice-version']));
  }
  t.same([...served].sort(), ['1', '2'], 'requests to /demo/ reach both versions');

  const promote = await sluice('promote', 'demo', '2');
  t.equal(promote.code, 0);
  t.match(promote.stdout, /^stable:\s+2$/m);
  t.match(promote.stdout, /^2\s+demo-2\s+ready\s+1\s+100\s+100\.0%$/m);
  t.equal((await sluice('traffic', 'demo', '1=50', '2=50', '--sticky', 'none')).code, 0);
  const back = await sluice('rollback', 'demo');
  t.equal(back.code, 0);
  t.match(back.stdout, /^2\s+demo-2\s+ready\s+1\s+100\s+100\.0%$/m, 'rollback: all traffic to the stable version');
  t.match(back.stdout, /^sticky:\s+-$/m);

  const unknown = await sluice('traffic', 'demo', '9=100');
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /400 SLUICE_ERR_INVALID_FIELD: weights\.9/);
});

t.test('rollout start, status, abort', async (t) => {
  const start = await sluice('rollout', 'demo', 'start', '--canary', '1', '--steps', '10,50,100', '--interval', '60', '--min-requests', '5');
  t.equal(start.code, 0, start.stderr);
  t.match(start.stdout, /^canary:\s+1 \(stable 2\)$/m);
  t.match(start.stdout, /^step:\s+1 of 3 \(10, 50, 100%\), canary at 10%$/m);
  const status = json(await sluice('rollout', 'demo', 'status', '--json'));
  t.match(status.rollout, { canary: '1', stable: '2', status: 'progressing', weight: 10 });
  t.same(status.weights, { 1: 10, 2: 90 });
  const twice = await sluice('rollout', 'demo', 'start', '--canary', '1');
  t.equal(twice.code, 1);
  t.match(twice.stderr, /409 SLUICE_ERR_CONFLICT: a rollout of demo-1 is in progress/);
  const abort = await sluice('rollout', 'demo', 'abort');
  t.equal(abort.code, 0);
  t.match(abort.stdout, /^status:\s+aborted$/m);
  t.same(json(await sluice('traffic', 'demo', '--json')).weights, { 2: 100 }, 'aborted: all traffic back to the stable version');
});

t.test('keys add, ls, rm', async (t) => {
  const add = await sluice('keys', 'add', 'team-b', '--deployments', 'demo', '--rpm', '600');
  t.equal(add.code, 0, add.stderr);
  const key = /^key: (sk-sluice-\S+)$/m.exec(add.stdout)?.[1];
  t.ok(key, 'the generated key is printed once');
  t.match(add.stdout, /^added API key team-b \(team-b#[0-9a-f]+\)$/m);
  const own = json(await sluice('keys', 'add', 'team-c', '--key-sha256', 'a'.repeat(64), '--json'));
  t.equal(own.name, 'team-c');
  t.equal(own.key, undefined, 'a key brought as a digest is not echoed');

  const ls = await sluice('keys', 'ls');
  t.match(ls.stdout, /^NAME\s+LABEL\s+DEPLOYMENTS\s+LIMITS\s+PER DEPLOYMENT\s+SOURCE\s+CREATED$/m);
  t.match(ls.stdout, /^team-b\s+team-b#[0-9a-f]+\s+demo\s+rpm=600\s+-\s+api\s+\S+$/m);
  t.match(ls.stdout, /^team-c\s+team-c#[0-9a-f]+\s+\*\s+-\s+-\s+api\s+\S+$/m);
  t.notMatch(ls.stdout, new RegExp(key!), 'ls never shows the key');

  const rm = await sluice('keys', 'rm', 'team-b');
  t.equal(rm.code, 0);
  t.match(rm.stdout, /removed API key team-b/);
  t.same(json(await sluice('keys', 'ls', '--json')).keys.map((k: any) => k.name), ['team-c']);
  const again = await sluice('keys', 'rm', 'team-b');
  t.equal(again.code, 1);
  t.match(again.stderr, /404 SLUICE_ERR_NOT_FOUND/);
});

t.test('costs: a row per deployment, --json as the API answers', async (t) => {
  const before = json(await sluice('costs', '--json')).deployments.find((d: any) => d.id === 'demo-2').predictions;
  const res = await gwRequest(`${gw.url}/demo-2/api/generate`, { body: { model: 'demo', prompt: 'hi', stream: false } });
  t.equal(res.status, 200, res.text);
  const r = await sluice('costs');
  t.equal(r.code, 0);
  t.match(r.stdout, /^ID\s+STATE\s+RUNNING H\s+PREDICTIONS\s+IN TOKENS\s+OUT TOKENS\s+TOTAL USD\s+PER 1K USD\s+SAVED USD$/m);
  const body = json(await sluice('costs', '--json'));
  // demo-1 has no prices: its answers are predictions all the same, at no cost.
  const free = body.deployments.find((d: any) => d.id === 'demo-1');
  t.ok(free.predictions > 0, `demo-1's answers are counted (${free.predictions})`);
  t.match(r.stdout, new RegExp(`^demo-1\\s+ready\\s+[\\d.]+\\s+${free.predictions}\\s+0\\s+0\\s+0\\.0000\\s+0\\.0000\\s+[\\d.]+$`, 'm'));
  t.equal(body.currency, 'usd');
  t.same(body.deployments.map((d: any) => d.id).sort(), ['demo-1', 'demo-2']);
  const paid = body.deployments.find((d: any) => d.id === 'demo-2');
  t.equal(paid.predictions, before + 1, 'the request to demo-2 (priced per request in its spec file) is counted');
  t.match(r.stdout, /^demo-2\s+ready\s+[\d.]+\s+\d+\s+\d+\s+\d+\s+[\d.]+\s+10\.0000\s+[\d.]+$/m, 'its cost per 1k predictions: 1000 x 0.01');
});

t.test('undeploy: drains, stops, and the deployment is gone', async (t) => {
  const r = await sluice('undeploy', 'demo-2', '--grace', '1000');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'undeployed demo-2 (stopped)\n');
  t.same(json(await sluice('ls', '--json')).deployments.map((d: any) => d.id), ['demo-1']);
  const again = await sluice('undeploy', 'demo-2');
  t.equal(again.code, 1);
  t.match(again.stderr, /no deployment 'demo-2'/);
});
