// `sluice deploy`: a deployment spec from flags and/or a YAML or JSON file, sent to
// POST /v1/deployments; with --wait, progress until it is ready (or failed: exit 1 with
// its last error), bounded by --timeout.

import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { createSpinner } from 'nanospinner';
import { ConfigError, deploymentSchema, parseYamlAsWritten, stringsAsWritten } from '../config/index.js';
import { AdminApiError, CliError, usageError } from './errors.js';
import { seg } from './admin-client.js';
import { contextOf, type CliContext } from './context.js';
import { readyOf } from './deployments.js';
import { collect, decimal, keyValue, positiveInt } from './parse.js';
import { printJson, printLine } from './output.js';
import type { DeploymentView } from './views.js';

const RUNTIMES = ['sim', 'remote', 'command', 'mlflow', 'ollama', 'llamacpp'];
const POLL_MS = 250;
/** The gateway's own default start_timeout_ms, for --wait's default bound. */
const DEFAULT_START_TIMEOUT_MS = 120_000;

interface DeployOptions {
  file?: string;
  runtime?: string;
  replicas?: number;
  url?: string[];
  arg?: string[];
  env?: Record<string, string>;
  readinessPath?: string;
  servedModel?: string;
  startTimeout?: number;
  wait?: boolean;
  timeout?: number;
}

export function registerDeployCommand(program: Command): void {
  program
    .command('deploy')
    .description('deploy a model version (POST /v1/deployments); --wait shows progress until it is ready')
    .argument('[model]', 'model name (or `model:` in the spec file)')
    .argument('[version]', 'version (or `version:` in the spec file)')
    .argument('[command...]', 'runtime `command`: the server\'s argv, after `--`, with {port} where its port goes')
    .option('-f, --file <spec>', 'deployment spec, YAML or JSON (the fields of a config file\'s deployments: entry); flags override it')
    .addOption(new Option('--runtime <runtime>', 'how the model is served').choices(RUNTIMES))
    .option('--replicas <n>', 'number of replicas', positiveInt('--replicas', 1, 100))
    .option('--url <url>', 'runtime `remote`: a replica URL (repeatable)', collect)
    .option('--arg <arg>', 'an extra argument for the model server (repeatable)', collect)
    .option('--env <KEY=VALUE>', 'an environment variable for the model server (repeatable)', keyValue('--env'))
    .option('--readiness-path <path>', 'path that answers 200 once a replica is ready')
    .option('--served-model <name>', 'the model name the server knows (request bodies are rewritten to it)')
    .option('--start-timeout <ms>', 'how long a replica may take to become ready', positiveInt('--start-timeout', 1, 86_400_000))
    .option('-w, --wait', 'wait until the deployment is ready, showing progress; exit 1 if it fails')
    .option('--timeout <s>', 'with --wait: give up after this many seconds (default: its start timeout + 10 s)', decimal('--timeout', 0.1))
    .addHelpText('after', `
Examples:
  sluice deploy demo 2 --runtime sim --replicas 2 --wait
  sluice deploy -f iris.yaml --wait --timeout 300
  sluice deploy echo 1 --runtime command --readiness-path / -- python3 -m http.server {port}

With --json: the deployment's view as GET /v1/deployments/{id} answers it (after --wait, the ready one).`)
    .action(async (model: string | undefined, version: string | undefined, command: string[], opts: DeployOptions, cmd: Command) => {
      const ctx = contextOf(cmd);
      const spec = specOf(model, version, command, opts);
      let d = await ctx.client.request<DeploymentView>('POST', '/v1/deployments', { body: spec });
      if (opts.wait === true) {
        const startMs = typeof spec['start_timeout_ms'] === 'number' ? spec['start_timeout_ms'] : DEFAULT_START_TIMEOUT_MS;
        d = await waitReady(ctx, d.id, (opts.timeout ?? startMs / 1000 + 10) * 1000);
      }
      if (ctx.json) return printJson(d);
      printLine(opts.wait === true
        ? `${d.id} is ${d.state}: ${readyOf(d)} replicas ready, ports ${d.replicas.map((r) => r.port).join(', ') || '-'}, route ${d.route}`
        : `${d.id} deployed (${d.state}); follow it with: sluice status ${d.id}`);
    });
}

/** The spec file, then the flags over it. */
function specOf(model: string | undefined, version: string | undefined, command: string[], o: DeployOptions): Record<string, unknown> {
  const spec: Record<string, unknown> = o.file === undefined ? {} : readSpec(o.file);
  const set = (field: string, v: unknown): void => {
    if (v !== undefined) spec[field] = v;
  };
  set('model', model);
  set('version', version);
  set('runtime', o.runtime);
  set('replicas', o.replicas);
  set('urls', o.url);
  set('args', o.arg);
  set('env', o.env);
  set('readiness_path', o.readinessPath);
  set('served_model', o.servedModel);
  set('start_timeout_ms', o.startTimeout);
  if (command.length > 0) spec['command'] = command;
  if (typeof spec['model'] !== 'string' || typeof spec['version'] !== 'string') {
    throw usageError('deploy needs a model and a version: `sluice deploy <model> <version>` or `model:` and `version:` in the -f spec');
  }
  if (command.length > 0 && (spec['runtime'] ?? 'sim') !== 'command') {
    throw usageError(`deploy: a server command (${command.join(' ')}) is only for --runtime command`);
  }
  return spec;
}

function readSpec(file: string): Record<string, unknown> {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`--file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let spec: unknown;
  try {
    spec = parseYamlAsWritten(raw);
  } catch (err) {
    throw usageError(`--file: ${file} is not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw usageError(`--file: ${file} must hold one deployment (a mapping of its fields)`);
  // Read as the config file reads a deployments: entry (`version: 2` or `args: [--n, 3]` are
  // text, `version: 02` stays 02, `version: 1.10` is refused): the API takes its body as typed.
  try {
    return stringsAsWritten(deploymentSchema, spec, '') as Record<string, unknown>;
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(`--file: ${file}: ${err.field}: ${err.reason}`);
    throw err;
  }
}

/** Polls the deployment until it settles; progress on stderr (a spinner on a terminal, a line per change otherwise). */
async function waitReady(ctx: CliContext, id: string, timeoutMs: number): Promise<DeploymentView> {
  const started = Date.now();
  const progress = progressOn(process.stderr, ctx);
  for (;;) {
    let d: DeploymentView;
    try {
      d = await ctx.client.get<DeploymentView>(`/v1/deployments/${seg(id)}`);
    } catch (err) {
      const gone = err instanceof AdminApiError && err.status === 404;
      progress.fail(gone ? `${id} was undeployed while waiting` : `${id}: ${(err as Error).message}`);
      if (gone) throw new CliError('SLUICE_CLI_DEPLOY_FAILED', `${id} was undeployed while waiting for it`);
      throw err;
    }
    const seconds = Math.round((Date.now() - started) / 1000);
    // Ready means one replica serves: wait for the others still on their way too.
    const allUp = !d.replicas.some((r) => r.state === 'starting' || r.state === 'restarting');
    switch (d.state) {
      case 'ready':
      case 'hibernated':
        if (d.state === 'hibernated' || allUp) {
          progress.succeed(`${id} ${d.state}, ${readyOf(d)} replicas ready (${seconds} s)`);
          return d;
        }
        break;
      case 'failed':
      case 'unhealthy':
      case 'stopped': {
        const why = d.last_error ?? d.replicas.map((r) => r.last_error ?? r.health?.last_error).find((e) => e != null) ?? d.state;
        progress.fail(`${id} ${d.state}`);
        throw new CliError('SLUICE_CLI_DEPLOY_FAILED', `deployment ${id} ${d.state}: ${why}`);
      }
    }
    if (Date.now() - started >= timeoutMs) {
      progress.fail(`${id} still ${d.state}`);
      throw new CliError('SLUICE_CLI_TIMEOUT', `deployment ${id} not ready after ${timeoutMs / 1000} s (state ${d.state}, ${readyOf(d)} replicas ready; it goes on starting: sluice status ${id})`);
    }
    progress.update(`${id} ${d.state}, ${readyOf(d)} replicas ready`, `(${seconds} s)`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

interface Progress {
  /** `what` changes with the deployment; `elapsed` only with time (lines are printed per change of `what`). */
  update(what: string, elapsed: string): void;
  succeed(text: string): void;
  fail(text: string): void;
}

function progressOn(stream: NodeJS.WriteStream, ctx: CliContext): Progress {
  if (stream.isTTY === true) {
    const spinner = createSpinner('', { stream }).start();
    return {
      update: (what, elapsed) => spinner.update({ text: `${what} ${ctx.err.dim(elapsed)}` }),
      succeed: (text) => spinner.success({ text }),
      fail: (text) => spinner.error({ text }),
    };
  }
  let last = '';
  return {
    update: (what) => {
      if (what !== last) stream.write(`${what}\n`);
      last = what;
    },
    succeed: (text) => stream.write(`${text}\n`),
    fail: (text) => stream.write(`${text}\n`),
  };
}
