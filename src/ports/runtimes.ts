// How each runtime is launched: a replica spec in, an argv (never a shell string), the
// environment it needs, the path that answers 200 once it serves, and its base URL.

import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkArgv, checkEnv, checkInt, checkPath, checkString, invalid } from './validate.js';
import { authority } from '../authority.js';
import { parseSimArgs } from '../sim/index.js';

export type RuntimeName = 'mlflow' | 'ollama' | 'command' | 'llamacpp' | 'sim' | 'remote';

interface SpecBase {
  readonly model: string;
  readonly version: string;
}

interface LocalSpecBase extends SpecBase {
  /** Extra variables for the server; the runtime's own (OLLAMA_HOST, ...) win. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface MlflowSpec extends LocalSpecBase {
  readonly runtime: 'mlflow';
  readonly trackingUri: string;
  /** Default 'mlflow' from PATH; usually the project virtualenv's bin/mlflow. */
  readonly mlflowBin?: string;
}

export interface OllamaSpec extends LocalSpecBase {
  readonly runtime: 'ollama';
  /** OLLAMA_KEEP_ALIVE: a Go duration ('10m', '-1') or integer seconds. */
  readonly keepAlive?: string | number;
  readonly ollamaBin?: string;
}

export interface CommandSpec extends LocalSpecBase {
  readonly runtime: 'command';
  /** argv template; {port}, {model}, {version} and {host} are substituted per element. */
  readonly command: readonly string[];
  readonly readinessPath: string;
  /** Also pass the port in this environment variable (many servers read PORT). */
  readonly portEnv?: string;
}

/** llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) on one GGUF file. */
export interface LlamacppSpec extends LocalSpecBase {
  readonly runtime: 'llamacpp';
  readonly modelPath: string;
  /** An interpreter with llama-cpp-python[server] installed; default 'python3' from PATH. */
  readonly python?: string;
  /** More server options, after sluice's own (e.g. --n_ctx 4096, --model_alias tiny). */
  readonly serverArgs?: readonly string[];
}

export interface SimSpec extends LocalSpecBase {
  readonly runtime: 'sim';
  readonly simArgs?: readonly string[];
}

export interface RemoteSpec extends SpecBase {
  readonly runtime: 'remote';
  readonly url: string;
  readonly readinessPath?: string;
}

export type ReplicaSpec = MlflowSpec | OllamaSpec | CommandSpec | LlamacppSpec | SimSpec | RemoteSpec;

export interface ProcessPlan {
  readonly kind: 'process';
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly readinessPath: string;
  readonly url: string;
  /** It answers OpenAI's GET /v1/models with the model it serves, whose name can be learnt once it is ready. */
  readonly listsModel?: true;
}

/** Nothing to spawn: the replica is a URL somebody else runs. */
export interface RemotePlan {
  readonly kind: 'remote';
  readonly readinessPath: string;
  readonly url: string;
}

export type LaunchPlan = ProcessPlan | RemotePlan;

export interface LaunchContext {
  /** Allocated port; required for every runtime but `remote`. */
  readonly port?: number;
  readonly host?: string;
  /** The gateway CLI the simulator runs from; defaults to the built dist/cli.js. */
  readonly cliPath?: string;
}

const MODEL_RE = /^(?![.-])[A-Za-z0-9._:-]{1,128}$/;
const VERSION_RE = /^(?![.])[A-Za-z0-9._]{1,128}$/;
// What Ollama's envconfig accepts; anything else it silently replaces with 5m.
const KEEP_ALIVE_RE = /^[-+]?(?:\d+|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/;

/** llama-cpp-python server options sluice gives every `llamacpp` replica, before the deployment's args. */
const LLAMACPP_OPTIONS: readonly string[] = Object.freeze(['--interrupt_requests', 'False']);

export function checkModel(value: unknown): string {
  if (typeof value !== 'string' || !MODEL_RE.test(value)) {
    throw invalid('model', 'must be 1-128 characters of [A-Za-z0-9._:-], not starting with . or -');
  }
  return value;
}

export function checkVersion(value: unknown): string {
  if (typeof value !== 'string' || !VERSION_RE.test(value)) {
    throw invalid('version', 'must be 1-128 characters of [A-Za-z0-9._], not starting with .');
  }
  return value;
}

function checkKeepAlive(value: unknown): string {
  const text = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
  if (typeof text !== 'string' || !KEEP_ALIVE_RE.test(text)) {
    throw invalid('keepAlive', "must be a Go duration such as '10m' or '-1', or integer seconds");
  }
  return text;
}

function checkUrl(value: unknown): string {
  const text = checkString('url', value, false);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid('url', 'must be an absolute http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('url', 'must be an absolute http(s) URL');
  return text.replace(/\/+$/, '');
}

/**
 * Compiled, this module sits next to cli.js. Run from source (tap loads .ts), the child
 * is plain node without a TypeScript loader, so it must run the build under dist/.
 */
function defaultCliPath(): string {
  const relative = import.meta.url.endsWith('.ts') ? '../../dist/cli.js' : '../cli.js';
  return fileURLToPath(new URL(relative, import.meta.url));
}

export function launchPlan(spec: ReplicaSpec, context: LaunchContext = {}): LaunchPlan {
  const model = checkModel(spec.model);
  const version = checkVersion(spec.version);
  if (spec.runtime === 'remote') {
    return Object.freeze({
      kind: 'remote',
      url: checkUrl(spec.url),
      readinessPath: checkPath('readinessPath', spec.readinessPath ?? '/'),
    });
  }
  const host = checkString('host', context.host ?? '127.0.0.1', false);
  const port = checkInt('port', context.port, 1, 65_535);
  const p = String(port);
  const hostPort = authority(host, port);
  const userEnv = checkEnv('env', spec.env);
  const plan = (argv: readonly string[], readinessPath: string, env: Record<string, string> = {}): ProcessPlan =>
    Object.freeze({
      kind: 'process',
      argv: checkArgv('argv', argv),
      env: Object.freeze({ ...userEnv, ...env }),
      readinessPath,
      url: `http://${hostPort}`,
    });

  switch (spec.runtime) {
    case 'mlflow': {
      const bin = spec.mlflowBin ?? 'mlflow';
      return plan(
        [bin, 'models', 'serve', '-m', `models:/${model}/${version}`, '-h', host, '-p', p, '--env-manager', 'local'],
        '/ping',
        {
          MLFLOW_TRACKING_URI: checkString('trackingUri', spec.trackingUri, false),
          // `models serve` execs `bash -c "exec uvicorn ..."`: uvicorn must be on PATH, and it
          // lives next to the mlflow executable of the virtualenv.
          ...(bin.includes('/') ? { PATH: `${dirname(bin)}:${process.env.PATH ?? '/usr/bin:/bin'}` } : {}),
          // MLflow 3 sends usage telemetry by default; a gateway's children must not.
          MLFLOW_DISABLE_TELEMETRY: 'true',
          DO_NOT_TRACK: 'true',
        },
      );
    }
    case 'ollama':
      return plan([spec.ollamaBin ?? 'ollama', 'serve'], '/', {
        OLLAMA_HOST: hostPort,
        ...(spec.keepAlive === undefined ? {} : { OLLAMA_KEEP_ALIVE: checkKeepAlive(spec.keepAlive) }),
      });
    case 'command': {
      const values: Record<string, string> = { port: p, model, version, host };
      const template = checkArgv('command', spec.command);
      const readinessPath = checkPath('readinessPath', spec.readinessPath);
      const portEnv = spec.portEnv === undefined ? undefined : checkEnvName('portEnv', spec.portEnv);
      // A server that is not told its port listens on its own default and never turns ready.
      if (portEnv === undefined && !template.some((arg) => arg.includes('{port}'))) {
        throw invalid('command', 'needs {port} in an argv element, or portEnv');
      }
      return plan(
        template.map((arg) => arg.replace(/\{(port|model|version|host)\}/g, (_, name: string) => values[name] ?? '')),
        readinessPath,
        portEnv === undefined ? {} : { [portEnv]: p },
      );
    }
    case 'llamacpp': {
      const python = checkString('python', spec.python ?? 'python3', false);
      const modelPath = checkString('modelPath', spec.modelPath, false);
      // The server loads the model before it listens: /v1/models answers once it can generate.
      // --interrupt_requests False: by default a stream that sees another request waiting
      // for the model ends at once with [DONE], an answer cut short that looks whole; the
      // gateway sends it many clients' requests, which must wait their turn instead. The
      // deployment's args come after and may turn it back on.
      const llama = plan(
        [python, '-m', 'llama_cpp.server', '--model', modelPath, '--host', host, '--port', p, ...LLAMACPP_OPTIONS, ...checkArgs('serverArgs', spec.serverArgs)],
        '/v1/models',
        // Its stdout is a file: unbuffered, a line (a client's disconnect, say) reaches the logs when printed.
        { PYTHONUNBUFFERED: '1' },
      );
      return Object.freeze({ ...llama, listsModel: true });
    }
    case 'sim': {
      const args = checkArgs('simArgs', spec.simArgs);
      // The simulator answers to the deployment's own model name, and to its built-in
      // `demo` that existing clients send; `--models` in the args replaces both.
      const models = namesSimModels(args) ? [] : ['--models', model === 'demo' ? model : `${model},demo`];
      return plan([process.execPath, context.cliPath ?? defaultCliPath(), 'sim', '--port', p, ...models, ...args], '/_sim/stats');
    }
    default:
      throw invalid('runtime', `unknown runtime '${(spec as { runtime: unknown }).runtime}'`);
  }
}

/**
 * The model a simulator lists first, which the front door rewrites requests to: the first
 * its args give with `--models` (it serves exactly those), else the deployment's own
 * (launchPlan gives it that one and `demo`). Args the simulator refuses leave the
 * deployment's: it will not start, and says why.
 */
export function simServedModel(model: string, args: readonly string[]): string {
  if (!namesSimModels(args)) return model;
  try {
    const options = parseSimArgs(['--port', '0', ...args]);
    return options === 'help' ? model : options.models[0]!;
  } catch {
    return model;
  }
}

function namesSimModels(args: readonly string[]): boolean {
  return args.some((a) => a === '--models' || a.startsWith('--models='));
}

function checkEnvName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) throw invalid(field, 'must be an environment variable name, e.g. PORT');
  return value;
}

function checkArgs(field: string, value: unknown): readonly string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(field, 'must be an array of strings');
  return value.map((arg: unknown, i) => checkString(`${field}[${i}]`, arg, true));
}
