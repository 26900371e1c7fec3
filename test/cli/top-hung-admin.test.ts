// `sluice top` on a terminal against an admin API that accepts the connection and never
// answers (a hung gateway: the moment an operator opens top). The view takes the terminal
// in raw mode, where Ctrl-C sends no SIGINT: q and Ctrl-C only set a flag that the view read
// once its poll returned, after the client's 60 s timeout. They quit at once now.

import { createServer, type Socket } from 'node:net';
import t from 'tap';
import { sh, Tmux } from '../helpers/cli.js';
import { CLI } from '../helpers/procs.js';

t.setTimeout(60_000);

// Port 29530 belongs to this file: the admin API that never answers.
const PORT = 29530;
const tmux = new Tmux('sluice-top-hung');
const sockets = new Set<Socket>();
const hung = createServer((s) => {
  sockets.add(s);
  s.on('data', () => undefined).on('close', () => sockets.delete(s));
});

t.before(() => new Promise<void>((resolve) => hung.listen(PORT, '127.0.0.1', resolve)));
t.teardown(() => {
  tmux.kill();
  for (const s of sockets) s.destroy();
  hung.close();
});

const topLine = `env SLUICE_ADMIN_URL=http://127.0.0.1:${PORT} ${sh(process.execPath)} ${sh(CLI)} top --interval 0.5`;

for (const [key, name] of [['q', 'q'], ['C-c', 'Ctrl-C']] as const) {
  t.test(`${name} quits top at once while its poll waits for the admin API`, async (t) => {
    const session = `top-${key}`;
    tmux.start(session, topLine);
    // The poll is sent and waits (the CLI takes some 0.5 s to start).
    await t.resolves(waitForConnection(10_000), 'top connected to the admin API');
    await new Promise((r) => setTimeout(r, 300));
    tmux.keys(session, key);
    const end = await tmux.waitFor(session, (s) => /EXIT=\d+/.test(s), 5_000, `top to quit on ${name}`);
    t.match(end, /EXIT=0/, 'exit 0, as any quit');
    t.notMatch(end, /collecting/, 'the terminal is given back (alternate screen left)');
  });
}

async function waitForConnection(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const before = sockets.size;
  while (sockets.size <= before) {
    if (Date.now() > deadline) throw new Error('no connection');
    await new Promise((r) => setTimeout(r, 50));
  }
}
