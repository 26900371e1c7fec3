// Real processes for end-to-end tests: the gateway (`sluice serve`) and the simulator
// (`sluice sim`), each started from the build under dist/, each stopped by the test.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface Proc {
  readonly child: ChildProcess;
  /** stdout and stderr lines, interleaved as they arrived. */
  readonly lines: string[];
  readonly stdout: string[];
  readonly stderr: string[];
  /**
   * The exit code, once the process has exited and its output has been read to the end:
   * 'exit' alone can come before the last lines (a refused config's message) are read.
   */
  readonly exited: Promise<number | null>;
  /** True once `exited` has resolved (a method: the helpers' objects spread a Proc). */
  ended(): boolean;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns `node dist/cli.js ...args`, collecting stdout+stderr lines. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return spawnProc(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
}

/** Runs `sluice serve --config configFile` until it exits by itself (code -999: it had not after 20 s, and was killed). */
export async function serveUntilExit(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; proc: Proc; ms: number }> {
  const t0 = performance.now();
  const proc = spawnCli(['serve', '--config', configFile], env);
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => resolve(-999), 20_000);
    void proc.exited.then((c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  if (code === -999) await proc.stop('SIGKILL');
  return { code, proc, ms: performance.now() - t0 };
}

/** A config file for `sluice serve` on ephemeral ports (one worker) keeping its state in `stateDir`: a second gateway beside one a test started. */
export function stateDirConfigFile(stateDir: string, ports: { from: number; to: number }, deployments: readonly unknown[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-state-dir-config-')), 'config.json');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, workers: 1, state_dir: stateDir, ports, deployments,
  }));
  return file;
}

// A test file that ends without stopping what it started (a `before` that timed out, the
// file killed for its timeout) must not leave gateways behind, holding ports the next files
// use: each process is started under setpriv (util-linux), which has the kernel send it
// SIGTERM when the test process dies (PR_SET_PDEATHSIG); a gateway so signalled stops its
// model servers as on any stop. setpriv execs the command: the pid is the command's.
const SETPRIV = '/usr/bin/setpriv';
const diesWithTest = existsSync(SETPRIV);

/** Spawns `command ...args` with exactly `env` (nothing inherited), collecting stdout+stderr lines. */
export function spawnProc(command: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): Proc {
  const child = diesWithTest
    ? spawn(SETPRIV, ['--pdeathsig', 'TERM', '--', command, ...args], { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stdout: string[] = [];
  const stderr: string[] = [];
  const stdoutLines = createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    stdout.push(l);
  });
  const stderrLines = createInterface({ input: child.stderr! }).on('line', (l) => {
    lines.push(l);
    stderr.push(l);
  });
  // A grandchild holding the pipes open must not hold the test: their end is awaited 2 s at most.
  const outputRead = Promise.all([once(stdoutLines, 'close'), once(stderrLines, 'close')]);
  let ended = false;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      const bound = setTimeout(finish, 2_000);
      void outputRead.then(finish);
      function finish(): void {
        clearTimeout(bound);
        ended = true;
        resolve(code);
      }
    });
  });
  return {
    child,
    lines,
    stdout,
    stderr,
    exited,
    ended: () => ended,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Waits until a line satisfies `pred`; returns it parsed as JSON when possible. */
export async function waitForLine(proc: Proc, pred: (line: string) => boolean, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let seen = 0;
  while (Date.now() < deadline) {
    for (; seen < proc.lines.length; seen++) if (pred(proc.lines[seen]!)) return proc.lines[seen]!;
    if (proc.ended()) throw new Error(`process exited (${proc.child.exitCode}):\n${proc.lines.slice(-30).join('\n')}`);
    await sleep(20);
  }
  throw new Error(`timed out waiting for a line:\n${proc.lines.slice(-30).join('\n')}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface Sim extends Proc {
  readonly port: number;
  readonly url: string;
  stats(): Promise<SimStats>;
  configure(tunables: Record<string, unknown>): Promise<void>;
  reset(): Promise<void>;
}

export interface SimStats {
  requests: number;
  active: number;
  completed: number;
  cancelled: number;
  cancellations: Array<{ request_id: string | null; path: string; at_ms: number; tokens_sent: number }>;
}

export async function startSim(args: string[] = []): Promise<Sim> {
  const proc = spawnCli(['sim', '--port', '0', ...args]);
  const line = await waitForLine(proc, (l) => l.includes('"listening"'));
  const port = (JSON.parse(line) as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    ...proc,
    port,
    url,
    async stats() {
      return (await (await fetch(`${url}/_sim/stats`)).json()) as SimStats;
    },
    async configure(tunables) {
      const r = await fetch(`${url}/_sim/config`, { method: 'POST', body: JSON.stringify(tunables), headers: { 'content-type': 'application/json' } });
      if (r.status !== 200) throw new Error(`sim config failed: ${r.status} ${await r.text()}`);
    },
    async reset() {
      await fetch(`${url}/_sim/reset`, { method: 'POST' });
    },
  };
}

export interface Gateway extends Proc {
  readonly port: number;
  readonly adminPort: number;
  readonly url: string;
  readonly adminUrl: string;
  readonly configFile: string;
}

export interface GatewayLaunch {
  /** `ulimit -n` for the gateway (and so for the model servers it starts): a machine short of descriptors. */
  readonly openFiles?: number;
}

/** Starts `sluice serve` with `config` (merged over test defaults) and waits for its deployments. */
export async function startGateway(config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}, waitReady = true, launch: GatewayLaunch = {}): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const configFile = join(dir, 'config.yaml');
  const full = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    workers: 1,
    state_dir: join(dir, 'state'),
    ports: { from: 18400, to: 18499 },
    log: { level: 'info', access: true },
    // A stopped test gateway has no balancer to wait for (test/control/drain.test.ts tests the delay).
    shutdown: { drain_delay_ms: 0 },
    ...config,
  };
  writeFileSync(configFile, JSON.stringify(full, null, 2));
  const args = ['serve', '--config', configFile];
  // exec: the shell becomes the gateway, so that the child's pid and signals are the gateway's.
  const proc = launch.openFiles === undefined
    ? spawnCli(args, env)
    : spawnProc('sh', ['-c', 'ulimit -n "$0" && exec "$@"', String(launch.openFiles), process.execPath, CLI, ...args], { env: { ...process.env, ...env } });
  const line = await waitForLine(proc, (l) => l.includes('sluice is listening'), 60_000);
  const info = JSON.parse(line) as { gateway: string; admin: string };
  const port = Number(new URL(info.gateway).port);
  const adminPort = Number(new URL(info.admin).port);
  const gw: Gateway = { ...proc, port, adminPort, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, configFile };
  if (waitReady) await waitDeploymentsReady(gw, env.SLUICE_ADMIN_TOKEN);
  return gw;
}

export async function waitDeploymentsReady(gw: Gateway, token?: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  while (Date.now() < deadline) {
    const body = (await (await fetch(`${gw.adminUrl}/v1/deployments`, { headers })).json()) as { deployments: Array<{ state: string; replicas: Array<{ state: string }> }> };
    if (body.deployments.every((d) => d.replicas.every((r) => r.state === 'ready'))) return;
    await sleep(50);
  }
  throw new Error(`deployments not ready:\n${gw.lines.slice(-30).join('\n')}`);
}

export interface DeploymentView {
  id: string;
  model: string;
  version: string;
  state: string;
  replicas: Array<{ id: string; url: string; port: number; state: string; pid: number | null }>;
}

export async function deployments(gw: Gateway): Promise<DeploymentView[]> {
  const r = await fetch(`${gw.adminUrl}/v1/deployments`);
  return ((await r.json()) as { deployments: DeploymentView[] }).deployments;
}

/** Ports of a deployment's replicas, in replica order (e.g. to read a simulator's /_sim/stats). */
export async function replicaPorts(gw: Gateway, id: string): Promise<number[]> {
  const d = (await deployments(gw)).find((x) => x.id === id);
  if (d === undefined) throw new Error(`no deployment ${id}`);
  return d.replicas.map((r) => r.port);
}

export async function simStats(port: number): Promise<SimStats> {
  return (await (await fetch(`http://127.0.0.1:${port}/_sim/stats`)).json()) as SimStats;
}

export async function metricsText(gw: Gateway): Promise<string> {
  return (await fetch(`${gw.adminUrl}/metrics`)).text();
}

/** The value of the one sample `name{labels...}` whose labels include all of `want`. */
export function sample(text: string, name: string, want: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labels = line.slice(name.length + 1, line.lastIndexOf('}'));
    if (Object.entries(want).every(([k, v]) => labels.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** The gateway's stdout lines that are JSON objects (its pino logs). */
export function jsonLogs(proc: Proc): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of proc.stdout) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return out;
}

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 5_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Resident memory of a process in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Waits until each named deployment has all its replicas ready (others are ignored). */
export async function waitReplicasReady(gw: Gateway, ids: string[], timeoutMs = 60_000): Promise<void> {
  await eventually(async () => {
    const all = await deployments(gw);
    return ids.every((id) => {
      const d = all.find((x) => x.id === id);
      return d !== undefined && d.replicas.length > 0 && d.replicas.every((r) => r.state === 'ready');
    }) ? true : undefined;
  }, timeoutMs, `deployments ${ids.join(', ')} to be ready`);
}
