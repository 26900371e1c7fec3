// The gateways a user might pick instead of sluice ("peers"), installed and started by the
// bench so that they are measured on the same request, to the same upstream, in the same run:
//
//   - Portkey's open-source gateway (Node, Hono), from npm, started with this Node;
//   - the LiteLLM proxy (Python, FastAPI + uvicorn), from PyPI, in a venv of its own so
//     that its ~120 pinned-by-range dependencies never meet anything else's.
//
// Both are pinned: a peer's figure only means something next to the version it was taken
// with. Installs land in a cache directory (bench/.peers/, git-ignored) and are skipped
// when a marker file there names the pinned version. An install that fails is reported,
// never thrown: the bench then measures without that peer and says why.

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { log } from './log.js';
import type { Proc, ProcessGroup } from './procs.js';

/** npm `@portkey-ai/gateway`. */
export const PORTKEY_VERSION = '1.15.2';
/** Its package.json and lock file, the whole dependency tree pinned (the version above is the one they name). */
const PINNED_PORTKEY = join(import.meta.dirname, '..', '..', 'bench', 'peers', 'portkey');

/**
 * PyPI `litellm[proxy]`. Not the newest release: from 1.108.8 on, `[proxy]` pins
 * litellm-enterprise / litellm-proxy-extras / (1.110) litellm-proxy versions that the
 * package index reachable from the bench machines does not carry, so pip cannot resolve
 * them. 1.108.7 is the newest whose `[proxy]` extra resolves there; Python >=3.10,<3.15.
 */
export const LITELLM_VERSION = '1.108.7';
const LITELLM_REQUIREMENT = `litellm[proxy]==${LITELLM_VERSION}`;

/** The bearer the load must send to LiteLLM: with a master key set, it rejects anything else. */
export const LITELLM_MASTER_KEY = 'sk-bench-master';

/**
 * The model name both peers are configured for: LiteLLM routes by the body's `model`, so it
 * must be the one the bench's request body names.
 */
export const PEER_MODEL = 'demo';

export interface PortkeyInstall {
  readonly version: string;
  /** The gateway's Node entry point (build/start-server.js). */
  readonly entry: string;
}

export interface LitellmInstall {
  readonly version: string;
  /** The venv's `litellm` console script. */
  readonly bin: string;
}

export interface PeerInstalls {
  /** null: not requested, or the install failed (see `errors`). */
  readonly portkey: PortkeyInstall | null;
  readonly litellm: LitellmInstall | null;
  /** Why a requested peer is null. */
  readonly errors: { readonly portkey?: string; readonly litellm?: string };
}

// Generous: a cold pip install of litellm[proxy] downloads ~300 MB of wheels.
const NPM_TIMEOUT_MS = 5 * 60_000;
const PIP_TIMEOUT_MS = 20 * 60_000;

/**
 * Installs the requested peers under `cacheDir` (idempotent: a peer whose marker names the
 * pinned version is not touched). The installers run as children of `group` so that a
 * Ctrl-C or a failing bench also stops a half-done pip.
 */
export async function installPeers(group: ProcessGroup, cacheDir: string, which: { portkey: boolean; litellm: boolean }): Promise<PeerInstalls> {
  mkdirSync(cacheDir, { recursive: true });
  const errors: { portkey?: string; litellm?: string } = {};
  let portkey: PortkeyInstall | null = null;
  let litellm: LitellmInstall | null = null;
  if (which.portkey) {
    try {
      portkey = await installPortkey(group, join(cacheDir, 'portkey'));
    } catch (err) {
      errors.portkey = `Portkey gateway ${PORTKEY_VERSION} could not be installed: ${brief((err as Error).message)}`;
      log(errors.portkey);
    }
  }
  if (which.litellm) {
    try {
      litellm = await installLitellm(group, join(cacheDir, 'litellm'));
    } catch (err) {
      errors.litellm = `LiteLLM ${LITELLM_VERSION} could not be installed: ${brief((err as Error).message)}`;
      log(errors.litellm);
    }
  }
  return { portkey, litellm, errors };
}

async function installPortkey(group: ProcessGroup, dir: string): Promise<PortkeyInstall> {
  const entry = join(dir, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');
  const marker = join(dir, 'INSTALLED');
  // The whole tree is pinned (bench/peers/portkey/package-lock.json): its semver ranges left
  // free, an install on another day got other versions of hono and the rest, and Portkey ran
  // some 40% faster per request from one session to the next with the same version of its own.
  const lock = readFileSync(join(PINNED_PORTKEY, 'package-lock.json'), 'utf8');
  const stamp = `${PORTKEY_VERSION} ${createHash('sha256').update(lock).digest('hex').slice(0, 16)}`;
  if (readMarker(marker) === stamp && existsSync(entry)) return { version: PORTKEY_VERSION, entry };
  const started = Date.now();
  log(`installing Portkey gateway ${PORTKEY_VERSION} into ${dir} (npm ci, from bench/peers/portkey's lock file)`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // Its own package.json, so that npm installs here and never walks up into sluice's.
  copyFileSync(join(PINNED_PORTKEY, 'package.json'), join(dir, 'package.json'));
  writeFileSync(join(dir, 'package-lock.json'), lock);
  // --ignore-scripts: the package's only script is a postinstall `patch-package`, and the
  // published package ships no patches/ for it to apply.
  await group.run({
    name: 'npm-ci-portkey',
    command: 'npm',
    args: ['ci', '--prefix', dir, '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel', 'error'],
    cwd: dir,
  }, NPM_TIMEOUT_MS);
  if (!existsSync(entry)) throw new Error(`npm finished but ${entry} is missing`);
  writeFileSync(marker, `${stamp}\n`);
  log(`Portkey gateway ${PORTKEY_VERSION} installed in ${seconds(started)}`);
  return { version: PORTKEY_VERSION, entry };
}

async function installLitellm(group: ProcessGroup, dir: string): Promise<LitellmInstall> {
  const venv = join(dir, 'venv');
  const python = join(venv, 'bin', 'python');
  const bin = join(venv, 'bin', 'litellm');
  const marker = join(dir, 'INSTALLED');
  if (readMarker(marker) === LITELLM_REQUIREMENT && existsSync(bin)) return { version: LITELLM_VERSION, bin };
  const started = Date.now();
  log(`installing ${LITELLM_REQUIREMENT} into a venv at ${venv} (pip; a cold install downloads ~300 MB and takes minutes)`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const sys = await group.run({ name: 'python-version', command: 'python3', args: ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'] }, 30_000)
    .catch((err: Error) => { throw new Error(`python3 is not usable: ${err.message}`); });
  const [major, minor] = sys.trim().split('.').map(Number) as [number, number];
  if (major !== 3 || minor < 10 || minor > 14) throw new Error(`LiteLLM ${LITELLM_VERSION} needs Python 3.10-3.14; python3 is ${sys.trim()}`);
  // pip for the venv: its own (ensurepip), or, where Debian's python3 lacks ensurepip
  // (no python3-venv), the system pip installing into it with --python (pip >= 22.3).
  let pip = [python, '-m', 'pip'];
  try {
    await group.run({ name: 'python-venv', command: 'python3', args: ['-m', 'venv', venv] }, 120_000);
  } catch (err) {
    log(`python3 -m venv failed (no ensurepip? apt-get install -y python3-venv fixes that); trying --without-pip with the system pip: ${brief((err as Error).message)}`);
    rmSync(venv, { recursive: true, force: true });
    await group.run({ name: 'python-venv', command: 'python3', args: ['-m', 'venv', '--without-pip', venv] }, 120_000);
    pip = ['python3', '-m', 'pip', '--python', python];
  }
  await group.run({
    name: 'pip-install-litellm',
    command: pip[0]!,
    args: [...pip.slice(1), 'install', '--quiet', '--disable-pip-version-check', '--no-input', LITELLM_REQUIREMENT],
    cwd: dir,
  }, PIP_TIMEOUT_MS);
  if (!existsSync(bin)) throw new Error(`pip finished but ${bin} is missing`);
  writeFileSync(marker, `${LITELLM_REQUIREMENT}\n`);
  log(`${LITELLM_REQUIREMENT} installed in ${seconds(started)}`);
  return { version: LITELLM_VERSION, bin };
}

/**
 * The headers the load must add for Portkey. Portkey has no static routes: each request
 * names its provider, and `openai` with a custom host sends the body on unchanged to
 * `<custom host>/chat/completions`. The client's own Authorization is passed on as the
 * provider's API key (the bench's upstream ignores it), so none is set here.
 */
export function portkeyHeaders(upstreamBase: string): Record<string, string> {
  return { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${trimSlash(upstreamBase)}/v1` };
}

/**
 * The headers the load must add for LiteLLM. Spelled `Authorization` like the bench's SDK
 * header set, so that spreading this over it replaces the SDK's key instead of sending two.
 */
export function litellmHeaders(): Record<string, string> {
  return { Authorization: `Bearer ${LITELLM_MASTER_KEY}` };
}

/**
 * Portkey on 127.0.0.1:`port`, forwarding (per portkeyHeaders) to `upstreamBase`.
 *
 * - `--port=N` (only this spelling) and `--headless` (no UI routes, no log stream) are all
 *   its CLI takes; NODE_ENV=production turns the UI off too.
 * - It passes no hostname to @hono/node-server, which then listens on every interface; a
 *   preload (written to the group's temp dir) makes a host-less listen() bind 127.0.0.1.
 * - Custom hosts are checked against SSRF rules: loopback and private addresses are refused
 *   unless trusted. TRUSTED_CUSTOM_HOSTS (default localhost,127.0.0.1,::1) is set to the
 *   upstream's host explicitly, so another loopback address works too.
 */
export async function startPortkey(group: ProcessGroup, install: PortkeyInstall, port: number, upstreamBase: string, cpus: string | null): Promise<Proc> {
  const preload = join(group.dir, 'portkey-listen-loopback.mjs');
  writeFileSync(preload, `import net from 'node:net';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && args[1] === undefined) args[1] = '127.0.0.1';
  return listen.apply(this, args);
};
`);
  const host = new URL(upstreamBase).hostname;
  return group.start({
    name: 'portkey',
    command: process.execPath,
    args: ['--import', preload, install.entry, `--port=${port}`, '--headless'],
    cpus,
    env: peerEnv({ NODE_ENV: 'production', TRUSTED_CUSTOM_HOSTS: [...new Set([host, '127.0.0.1', 'localhost'])].join(',') }, ['REDIS_CONNECTION_STRING']),
  }, { url: `http://127.0.0.1:${port}/`, timeoutMs: 30_000 });
}

/**
 * LiteLLM on 127.0.0.1:`port` with one uvicorn worker, one model (PEER_MODEL) at
 * `upstreamBase`/v1, a master key and no database. Its config goes to the group's temp dir.
 *
 * What would phone home or log per request is off: the LITELLM_LOCAL_* switches make it use
 * its bundled model-cost map, blog posts, policy templates, Anthropic beta headers and
 * autorouter presets instead of fetching them from GitHub at start (without them it retries
 * a DNS failure for seconds here), LITELLM_TELEMETRY_DISABLED vetoes its telemetry,
 * LITELLM_LOG=ERROR keeps request logging off, DISABLE_ADMIN_UI drops the UI, and DATABASE_URL
 * is removed so no spend logs are written. (Checked with strace: its only connection is
 * the upstream.) Start-up takes ~9 s on an idle core, mostly imports.
 */
export async function startLitellm(group: ProcessGroup, install: LitellmInstall, port: number, upstreamBase: string, cpus: string | null): Promise<Proc> {
  const config = join(group.dir, 'litellm.yaml');
  // JSON is YAML: no quoting rules to get wrong for the URL.
  writeFileSync(config, `${JSON.stringify({
    model_list: [{ model_name: PEER_MODEL, litellm_params: { model: `openai/${PEER_MODEL}`, api_base: `${trimSlash(upstreamBase)}/v1`, api_key: 'sk-upstream' } }],
    litellm_settings: { telemetry: false },
    general_settings: { master_key: LITELLM_MASTER_KEY },
  }, null, 2)}\n`);
  const local = Object.fromEntries(['MODEL_COST_MAP', 'BLOG_POSTS', 'POLICY_TEMPLATES', 'ANTHROPIC_BETA_HEADERS', 'AUTOROUTER_PRESETS'].map((k) => [`LITELLM_LOCAL_${k}`, 'True']));
  return group.start({
    name: 'litellm',
    command: install.bin,
    args: ['--config', config, '--host', '127.0.0.1', '--port', String(port), '--num_workers', '1'],
    cpus,
    cwd: group.dir,
    env: peerEnv({ ...local, LITELLM_TELEMETRY_DISABLED: 'true', LITELLM_LOG: 'ERROR', DISABLE_ADMIN_UI: 'True' }, ['DATABASE_URL', 'LITELLM_MASTER_KEY', 'REDIS_HOST', 'REDIS_URL']),
    // Imports take seconds, more when pinned to a core another process is loading.
  }, { url: `http://127.0.0.1:${port}/health/liveliness`, timeoutMs: 120_000 });
}

/** The bench's environment plus `set`, minus `drop` and any HTTP proxy: the upstream is local. */
function peerEnv(set: Record<string, string>, drop: readonly string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (/^(https?|all)_proxy$/i.test(k) || drop.includes(k)) delete env[k];
  return { ...env, ...set };
}

function readMarker(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

/** An installer's error: its first line and the end of its log's tail, where pip and npm say why. */
function brief(text: string): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return (lines.length <= 7 ? lines : [lines[0]!, '...', ...lines.slice(-5)]).join(' | ');
}
