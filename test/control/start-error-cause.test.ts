// A model server that fails at load under a launcher that re-raises the failure, as
// `mlflow models serve` does around uvicorn: the child's traceback (`RuntimeError: boom at
// load`) comes first, then the launcher's own, 20 lines and more, ending `Exception: Command
// ... returned non zero return code`. A deploy answered 502 SLUICE_ERR_DEPLOY_FAILED with the
// last 20 lines only: the launcher's traceback, never the cause, which was in the logs alone.
// The error now names the attempt's first exception line before the last lines.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, reapServers } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 28150-28159 belong to this file: 28150 the gateway, 28151 its admin API, 28152-28159
// model-server ports.
const RANGE = { from: 28152, to: 28159 };

const LAUNCHER = `
import subprocess, sys
def serve(port):
    rc = subprocess.call([sys.executable, "-c", CHILD])
    if rc != 0:
        raise Exception(f"Command '['uvicorn', '--port', '{port}']' returned non zero return code. Return code = {rc}")
def nest(depth, port):
    return serve(port) if depth == 0 else nest(depth - 1, port)
CHILD = """
def load_context():
    raise RuntimeError('boom at load: weights corrupted')
print('loading the model', flush=True)
load_context()
"""
nest(12, sys.argv[1])
`;

t.test('a failed start names the first exception its output shows, before the launcher\'s traceback', async (t) => {
  const script = join(t.testdir(), 'launcher.py');
  writeFileSync(script, LAUNCHER);
  const gw = await startGateway({ listen: { host: '127.0.0.1', port: 28150 }, admin: { host: '127.0.0.1', port: 28151 }, ports: RANGE });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  const res = await admin.post('/v1/deployments?wait=true', { model: 'broken', version: '1', runtime: 'command', command: ['python3', script, '{port}'], readiness_path: '/ping' });
  t.equal(res.status, 502, res.text.slice(0, 300));
  const message: string = res.body.error.message;
  t.equal(res.body.error.code, 'SLUICE_ERR_DEPLOY_FAILED');
  t.match(message.split('\n')[0], /^replica broken-1\/0 exited with code 1 before becoming ready; first error: RuntimeError: boom at load: weights corrupted; last output:$/, 'its first line names the cause');
  t.match(message, /\[stderr\] Exception: Command .* returned non zero return code/, 'the last lines follow');
  const view = await admin.get('/v1/deployments/broken-1');
  t.match(view.body.last_error, /first error: RuntimeError: boom at load/, 'the view\'s last_error too');
});
