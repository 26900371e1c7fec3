// schemathesis (the pinned .venv-schemathesis/, scripts/setup-schemathesis.sh) against a
// running gateway's admin API, with the admin token, from its own /openapi.json: examples,
// coverage, fuzzing and stateful phases, seed 1, a 25 s budget. Asserted:
// - no 5xx but the documented by-design ones (test/fixtures/schemathesis_hooks.py), every
//   answer's status, content type, headers and body as documented, the token enforced;
// - afterwards nothing is corrupted: the deployments listed still validate, the config's
//   deployment still serves a request, the state files load through the store's own
//   decoders (their specs still valid deployment specs), and a gateway restarted on them
//   brings back the same deployments, keys and traffic.
// Only simulator replicas start (the hooks turn other runtimes into sim; /deploy/... gets an
// mlflow binary that does not exist), at most two per deployment.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { adminApiDocument } from '../../src/admin/openapi.js';
import { FileStateStore } from '../../src/state/index.js';
import { startRegistryStandIn, type RegistryStandIn } from '../fixtures/registry-stand-in.js';
import { type ApiDocument, ResponseValidator } from '../helpers/openapi.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 18804-18819 belong to this file (test/admin uses 18800-18819).
const TOKEN = 'fuzz-test-token';
const SCHEMATHESIS = fileURLToPath(new URL('../../.venv-schemathesis/bin/schemathesis', import.meta.url));
const HOOKS_DIR = fileURLToPath(new URL('../fixtures', import.meta.url));
const SETUP_HINT = 'run `bash scripts/setup-schemathesis.sh` from the project root (`npm test` runs it through scripts/setup.sh --test)';
const validator = new ResponseValidator(adminApiDocument() as unknown as ApiDocument);

let registry: RegistryStandIn | undefined;
let gw: Gateway | undefined;
t.teardown(async () => {
  await gw?.stop();
  await registry?.close();
});

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

t.test('schemathesis finds the admin API as documented, and leaves it whole', async (t) => {
  if (!existsSync(SCHEMATHESIS)) throw new Error(`${SCHEMATHESIS} is missing: ${SETUP_HINT}`);
  registry = await startRegistryStandIn();
  const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-fuzz-')), 'state');
  const config = {
    admin: { host: '127.0.0.1', port: 0, token: TOKEN },
    state_dir: stateDir,
    ports: { from: 18804, to: 18819 },
    log: { level: 'info', access: false },
    mlflow: { tracking_uri: registry.trackingUri, bin: '/nonexistent/sluice-fuzz-mlflow' },
    deployments: [{ model: 'fz', version: '1', runtime: 'sim', args: ['--token-ms', '1'] }],
    api_keys: [{ name: 'cfg', key_sha256: '5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8' }],
  };
  gw = await startGateway(config, { SLUICE_ADMIN_TOKEN: TOKEN });
  const reportDir = mkdtempSync(join(tmpdir(), 'sluice-schemathesis-'));

  const started = performance.now();
  const { code, output } = await run(SCHEMATHESIS, [
    'run', `${gw.adminUrl}/openapi.json`,
    '--header', `Authorization: Bearer ${TOKEN}`,
    // positive_data_acceptance is left out: a schema-valid deployment is still refused when
    // a rule of its runtime says no (deploymentProblem: a port_env outside `command`, an
    // unset auth.env...) or the state does (a version not deployed): 400 and 409 by design.
    '--checks', 'all', '--exclude-checks', 'positive_data_acceptance',
    '--seed', '1', '--max-examples', '10', '--max-time', '25', '--workers', '1', '--request-timeout', '15',
    '--report', 'junit', '--report-dir', reportDir,
  ], { SCHEMATHESIS_HOOKS: 'schemathesis_hooks', PYTHONPATH: HOOKS_DIR, NO_COLOR: '1', PYTHONHASHSEED: '0' });
  const seconds = (performance.now() - started) / 1000;
  // Its progress bar redraws itself even into a pipe: the report starts at its first heading.
  const plain = output.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  const report = plain.slice(Math.max(0, plain.search(/^=+ [A-Z]+ =+$/m)));
  t.comment(`schemathesis ran ${seconds.toFixed(1)} s: ${(/Test cases:\s*\n\s*(.*)/.exec(plain)?.[1] ?? '').trim()}`);
  t.equal(code, 0, `schemathesis found nothing (exit ${code}):\n${report.slice(-12_000)}`);
  const junit = readdirSync(reportDir).map((f) => readFileSync(join(reportDir, f), 'utf8')).join('');
  const tested = new Set([...junit.matchAll(/<testcase [^>]*name="([^"]+)"/g)].map(([, name]) => name!));
  // Its own schema's URL and the live feed (the hooks leave it out: a case would last as
  // long as the stream) are the operations it does not test: openapi.test.ts checks them.
  const untested = ['GET /openapi.json', 'GET /v1/events/stream'];
  const operations = Object.entries(adminApiDocument()['paths'] as Record<string, object>)
    .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).filter((op) => !untested.includes(op));
  t.same(operations.filter((op) => !tested.has(op)), [], `every other operation (${operations.length}) was tested`);

  // Nothing corrupted: what is listed still validates, the config's deployment still serves.
  const headers = { authorization: `Bearer ${TOKEN}` };
  const listed = await fetch(`${gw.adminUrl}/v1/deployments`, { headers });
  const list = (await listed.json()) as { deployments: Array<{ id: string; source: string; state: string }> };
  t.same(validator.problems('GET', '/v1/deployments', listed.status, listed.headers.get('content-type'), list), [], 'the deployments listed after the run are as documented');
  t.ok(list.deployments.some((d) => d.id === 'fz-1'), `fz-1 is still deployed (${list.deployments.map((d) => `${d.id}:${d.state}`).join(', ')})`);
  // Held and woken if the run hibernated it.
  const served = await fetch(`${gw.url}/fz-1/v1/chat/completions`, {
    method: 'POST', body: JSON.stringify({ model: 'fz', messages: [{ role: 'user', content: 'hi' }] }), signal: AbortSignal.timeout(20_000),
  });
  t.equal(served.status, 200, `fz-1 serves a request after the run (${served.status})`);
  await served.body?.cancel();
  const keys = ((await (await fetch(`${gw.adminUrl}/v1/keys`, { headers })).json()) as { keys: Array<{ name: string }> }).keys.map((k) => k.name).sort();
  const traffic = async (g: Gateway): Promise<Array<[string, unknown]>> => {
    const { models } = (await (await fetch(`${g.adminUrl}/v1/models`, { headers })).json()) as { models: Array<{ model: string; weights: unknown; rollout: { status: string } | null }> };
    // A rollout still running goes on changing its model's weights: those are compared by name only.
    return models.map((m) => [m.model, m.rollout === null || ['promoted', 'rolled_back', 'aborted'].includes(m.rollout.status) ? m.weights : 'rollout running']);
  };
  const models = await traffic(gw);

  // The state files load through the store's own decoders, which re-validate every entry.
  const store = new FileStateStore(stateDir);
  const { deployments: desired } = await store.load();
  for (const d of desired) {
    t.same(validator.schemaProblems('DeploymentSpec', d.spec), [], `stored ${d.spec.model}-${d.spec.version} is still a valid deployment spec`);
  }
  t.same(desired.map((d) => `${d.spec.model}-${d.spec.version}`).sort(), list.deployments.filter((d) => d.source === 'api').map((d) => d.id).sort(), 'the state holds exactly the API deployments listed');
  t.same((await store.loadKeys()).map((k) => k.name).sort(), keys.filter((k) => k !== 'cfg'), 'and exactly the API keys');
  await store.loadTraffic();
  for (const file of ['hibernated.json', 'hibernated-ms.json', 'replicas.json']) {
    const path = join(stateDir, file);
    if (existsSync(path)) t.doesNotThrow(() => JSON.parse(readFileSync(path, 'utf8')), `${file} parses`);
  }

  // A gateway restarted on that state brings back the same deployments, keys and traffic.
  await gw.stop();
  gw = await startGateway(config, { SLUICE_ADMIN_TOKEN: TOKEN }, false);
  const again = ((await (await fetch(`${gw.adminUrl}/v1/deployments`, { headers })).json()) as { deployments: Array<{ id: string }> }).deployments.map((d) => d.id).sort();
  t.same(again, list.deployments.map((d) => d.id).sort(), 'a restart brings back the same deployments');
  const keysAgain = ((await (await fetch(`${gw.adminUrl}/v1/keys`, { headers })).json()) as { keys: Array<{ name: string }> }).keys.map((k) => k.name).sort();
  t.same(keysAgain, keys, 'and the same keys');
  t.same(await traffic(gw), models, 'and the same traffic weights');
});
