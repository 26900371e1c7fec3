// A model server that prints without pause (a debug flag left on, a tight error loop) must
// not stall the gateway's control plane nor fill its disk: each poll of its log file reads
// only the newest output (and says what it passed over), a file over 16 MiB is truncated,
// and polls come every 20 ms while it floods.

import { closeSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { LogBuffer } from '../../src/ports/log-buffer.js';
import { LogFileTail, logFilePaths, openLogFiles } from '../../src/ports/log-files.js';
import { adminClient } from '../helpers/control.js';
import { startGateway, sleep } from '../helpers/procs.js';

// Model-server ports 19350-19359 belong to this file.
const MiB = 1024 * 1024;

t.test('a server printing hundreds of MB/s: the gateway reads its newest lines and says what it passed over', async (t) => {
  const dir = t.testdir();
  const script = join(dir, 'flood.py');
  // Serves GET on its port; a thread prints numbered 1 KiB lines, 1 MiB at a time, for ever.
  writeFileSync(script, [
    'import sys, threading, http.server',
    'def flood():',
    '    n = 0',
    '    while True:',
    "        sys.stdout.write(''.join('line %d %s\\n' % (n + i, 'x' * 1000) for i in range(1024)))",
    '        n += 1024',
    'threading.Thread(target=flood, daemon=True).start()',
    'class H(http.server.BaseHTTPRequestHandler):',
    '    def do_GET(self):',
    "        self.send_response(200); self.send_header('content-length', '2'); self.end_headers(); self.wfile.write(b'ok')",
    '    def log_message(self, *a): pass',
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()",
  ].join('\n'));
  const stateDir = join(dir, 'state');
  const gw = await startGateway({
    state_dir: stateDir,
    ports: { from: 19350, to: 19359 },
    deployments: [{ model: 'flood', version: '1', runtime: 'command', command: ['python3', '-u', script, '{port}'], readiness_path: '/' }],
  });
  t.teardown(() => gw.stop());
  // Its file's size depends on how fast this machine lets it write (16 MiB plus what it writes
  // while a poll and a truncation run): not asserted; what the gateway reads of it is.
  await sleep(2_000);
  const logs = await adminClient(gw.adminUrl).get('/v1/deployments/flood-1/logs?tail=200');
  t.equal(logs.status, 200);
  const lines = (logs.body as { lines: Array<{ line: string }> }).lines.map((l) => l.line);
  const marker = lines.findIndex((l) => /^\[sluice: \d+ bytes of output not read/.test(l));
  t.ok(marker >= 0, 'what was passed over is said in the logs');
  t.ok(lines.slice(marker + 2).some((l) => /^line \d+ x{1000}$/.test(l)), 'and whole lines read after it');
});

t.test('a poll reads only the newest 64 KiB of what came since the last one, and says how much it passed over', async (t) => {
  const dir = t.testdir();
  const paths = logFilePaths(dir, 'srv');
  const [out, err] = openLogFiles(dir, paths);
  closeSync(err);
  const logs = new LogBuffer(500);
  const tail = new LogFileTail(paths, logs);
  t.teardown(() => tail.stop());
  // 100 MiB in one go, then a last line: as much as a flooding server writes between two polls.
  const block = Buffer.from(('y'.repeat(1023) + '\n').repeat(1024));
  for (let i = 0; i < 100; i++) writeSync(out, block);
  writeSync(out, 'the newest line\n');
  closeSync(out);
  const written = 100 * MiB + 16;
  tail.poll();
  const lines = logs.tail().map((l) => l.line);
  t.equal(lines.filter((l) => l.startsWith('[sluice:')).length, 1);
  t.equal(lines.find((l) => l.startsWith('[sluice:')), `[sluice: ${written - 64 * 1024} bytes of output not read: the server wrote faster than the gateway reads its log]`, 'what was passed over is said, with its size');
  t.equal(lines[lines.length - 1], 'the newest line', 'the newest output was read');
  t.ok(lines.length <= 66, `no more than 64 KiB of lines were read and split (${lines.length} lines; all 100 MiB would be 102,400)`);
  const deadline = Date.now() + 5_000;
  while (statSync(paths.stdout).size > 16 * MiB && Date.now() < deadline) await sleep(10);
  t.equal(statSync(paths.stdout).size, 0, 'and the file over 16 MiB was truncated');
});
