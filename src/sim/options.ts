// Every simulator setting, its default, its CLI flag and its JSON name live in this one
// module, so the CLI, `POST /_sim/config` and `startSim()` cannot drift apart.

export type Protocol = 'ollama' | 'openai' | 'mlflow';
export const PROTOCOLS: readonly Protocol[] = Object.freeze(['ollama', 'openai', 'mlflow']);

/** Whose `GET /metrics` to imitate; `none` leaves /metrics an unknown path. */
export type MetricsFormat = 'vllm' | 'llamacpp' | 'none';
export const METRICS_FORMATS: readonly MetricsFormat[] = Object.freeze(['vllm', 'llamacpp', 'none']);

/** Behaviour that can change while the simulator runs (`POST /_sim/config`). */
export interface Tunables {
  /** Time to first token (and the latency of non-streamed answers), ms. */
  readonly ttftMs: number;
  /** Time between two tokens, ms. */
  readonly tokenMs: number;
  /** Tokens per response; `num_predict` / `max_tokens` can only lower it. */
  readonly tokens: number;
  /** Fraction (0..1) of generation requests answered 500 before any byte. */
  readonly errorRate: number;
  /** Accept every protocol request and never answer it. */
  readonly hang: boolean;
  /** Exit the process with code 1 once this many tokens were produced; 0 = off. */
  readonly crashAfter: number;
  /** Force this status (with a protocol-shaped error) on generation requests; 0 = off. */
  readonly status: number;
  /** Wait this long before a forced status (a server that fails after working on the request), ms; 0 = at once. */
  readonly statusDelayMs: number;
  readonly metrics: MetricsFormat;
  /** Requests reported waiting (vLLM) or deferred (llama.cpp): the simulator has no queue of its own. */
  readonly metricsWaiting: number;
  /** KV-cache usage (0..1) reported in /metrics. */
  readonly metricsKvUsage: number;
}

type TunableValue = Tunables[keyof Tunables];

export interface SimOptions extends Tunables {
  /** 0 = ephemeral; the real port is returned by `startSim` and printed by the CLI. */
  readonly port: number;
  readonly host: string;
  readonly protocol: Protocol;
  /** Model names as a user would write them (`demo`, `llama3.2:1b`). */
  readonly models: readonly string[];
  /** Write `{"event":...}` lines (cancellations, crash) to stderr. */
  readonly logEvents: boolean;
  /** Listen only after this long, ms: a server that loads a model before it answers (a cold start). */
  readonly startDelayMs: number;
}

export const SIM_DEFAULTS: SimOptions = Object.freeze({
  port: 0,
  host: '127.0.0.1',
  protocol: 'ollama',
  models: Object.freeze(['demo']),
  logEvents: true,
  startDelayMs: 0,
  ttftMs: 20,
  tokenMs: 5,
  tokens: 20,
  errorRate: 0,
  hang: false,
  crashAfter: 0,
  status: 0,
  statusDelayMs: 0,
  metrics: 'none',
  metricsWaiting: 0,
  metricsKvUsage: 0,
} satisfies SimOptions);

/** A bad flag or config value; the message names the offending flag or key. */
export class SimOptionError extends Error {
  override readonly name = 'SimOptionError';
}

type Kind = 'count' | 'rate' | 'bool' | 'status' | 'metrics';

interface TunableSpec {
  readonly key: keyof Tunables;
  readonly json: string;
  readonly flag: string;
  readonly kind: Kind;
}

const TUNABLE_SPECS: readonly TunableSpec[] = [
  { key: 'ttftMs', json: 'ttft_ms', flag: '--ttft-ms', kind: 'count' },
  { key: 'tokenMs', json: 'token_ms', flag: '--token-ms', kind: 'count' },
  { key: 'tokens', json: 'tokens', flag: '--tokens', kind: 'count' },
  { key: 'errorRate', json: 'error_rate', flag: '--error-rate', kind: 'rate' },
  { key: 'hang', json: 'hang', flag: '--hang', kind: 'bool' },
  { key: 'crashAfter', json: 'crash_after', flag: '--crash-after', kind: 'count' },
  { key: 'status', json: 'status', flag: '--status', kind: 'status' },
  { key: 'statusDelayMs', json: 'status_delay_ms', flag: '--status-delay-ms', kind: 'count' },
  { key: 'metrics', json: 'metrics', flag: '--metrics', kind: 'metrics' },
  { key: 'metricsWaiting', json: 'metrics_waiting', flag: '--metrics-waiting', kind: 'count' },
  { key: 'metricsKvUsage', json: 'metrics_kv_usage', flag: '--metrics-kv-usage', kind: 'rate' },
];

const SPEC_BY_JSON = new Map(TUNABLE_SPECS.map((s) => [s.json, s]));
const SPEC_BY_FLAG = new Map(TUNABLE_SPECS.map((s) => [s.flag, s]));

// Large enough for any test, small enough that a typo cannot schedule a timer for years.
const MAX_COUNT = 100_000_000;
// The first character as the gateway allows it in a deployment's model name, which the
// simulator of a `sim` deployment serves.
const MODEL_NAME = /^[A-Za-z0-9_:][A-Za-z0-9._:/-]*$/;

export const SIM_USAGE = `usage: sluice sim --port N [flags]
  --port N            listen port (required; 0 = ephemeral, see the "listening" line)
  --host H            bind address (default 127.0.0.1)
  --start-delay-ms N  listen only after N ms (a server loading its model: a cold start)
  --protocol P        ollama (native + OpenAI compat, default) | openai | mlflow
  --models a,b        served model names (default demo; demo == demo:latest)
  --ttft-ms N         time to first token, ms (default 20)
  --token-ms N        time between tokens, ms (default 5)
  --tokens N          tokens per response (default 20)
  --error-rate X      fraction 0..1 of generation requests answered 500 (default 0)
  --hang              accept requests and never answer
  --crash-after N     exit with code 1 after N tokens (default 0 = off)
  --status N          force this status on generation requests (400..599, 0 = off)
  --status-delay-ms N wait N ms before answering with --status (default 0 = at once)
  --metrics F         GET /metrics as vllm | llamacpp exports it (default none = no /metrics)
  --metrics-waiting N requests reported waiting/deferred in /metrics (default 0)
  --metrics-kv-usage X KV-cache usage 0..1 reported in /metrics (default 0)
`;

function checkValue(spec: TunableSpec, value: unknown, name: string): TunableValue {
  switch (spec.kind) {
    case 'bool':
      if (typeof value !== 'boolean') throw new SimOptionError(`${name} must be true or false`);
      return value;
    case 'rate':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
        throw new SimOptionError(`${name} must be a number between 0 and 1, got ${JSON.stringify(value)}`);
      }
      return value;
    case 'count':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_COUNT) {
        throw new SimOptionError(`${name} must be an integer 0..${MAX_COUNT}, got ${JSON.stringify(value)}`);
      }
      return value;
    case 'status':
      if (typeof value !== 'number' || !Number.isInteger(value) || (value !== 0 && (value < 400 || value > 599))) {
        throw new SimOptionError(`${name} must be 0 (off) or an HTTP status 400..599, got ${JSON.stringify(value)}`);
      }
      return value;
    case 'metrics':
      if (!(METRICS_FORMATS as readonly unknown[]).includes(value)) {
        throw new SimOptionError(`${name} must be one of ${METRICS_FORMATS.join(', ')}, got ${JSON.stringify(value)}`);
      }
      return value as MetricsFormat;
  }
}

/** Converts a CLI string to the JSON type the same check expects. */
function fromFlagText(spec: TunableSpec, text: string | undefined): unknown {
  if (spec.kind === 'bool') {
    if (text === undefined || text === 'true' || text === '1') return true;
    if (text === 'false' || text === '0') return false;
    return text;
  }
  if (spec.kind === 'metrics') return text;
  if (text === undefined || text.trim() === '') return text;
  return Number(text);
}

/** The run-time part of the options, as a frozen snapshot. */
export function pickTunables(o: Tunables): Tunables {
  const out: Record<string, TunableValue> = {};
  for (const spec of TUNABLE_SPECS) out[spec.key] = o[spec.key];
  return Object.freeze(out as unknown as Tunables);
}

/** Snake_case JSON view of the tunables, as `/_sim/config` returns it. */
export function tunablesJson(t: Tunables): Record<string, TunableValue> {
  const out: Record<string, TunableValue> = {};
  for (const spec of TUNABLE_SPECS) out[spec.json] = t[spec.key];
  return out;
}

/**
 * Applies a `POST /_sim/config` body to the current tunables and returns a new frozen
 * snapshot; unknown keys and bad values are rejected as a whole (nothing is half-applied).
 */
export function applyTunablesPatch(current: Tunables, patch: unknown): Tunables {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
    throw new SimOptionError('config must be a JSON object');
  }
  const next: Record<string, TunableValue> = { ...current };
  for (const [json, value] of Object.entries(patch)) {
    const spec = SPEC_BY_JSON.get(json);
    if (spec === undefined) {
      throw new SimOptionError(`unknown tunable '${json}' (known: ${TUNABLE_SPECS.map((s) => s.json).join(', ')})`);
    }
    next[spec.key] = checkValue(spec, value, json);
  }
  return Object.freeze(next as unknown as Tunables);
}

/** Validates options given to `startSim()`; fills defaults and freezes the result. */
export function resolveSimOptions(input: Partial<SimOptions> = {}): SimOptions {
  const merged: SimOptions = { ...SIM_DEFAULTS, ...stripUndefined(input) };
  for (const spec of TUNABLE_SPECS) checkValue(spec, merged[spec.key], spec.json);
  if (!Number.isInteger(merged.port) || merged.port < 0 || merged.port > 65535) {
    throw new SimOptionError(`port must be an integer 0..65535, got ${JSON.stringify(merged.port)}`);
  }
  if (typeof merged.host !== 'string' || merged.host === '') throw new SimOptionError('host must be a non-empty string');
  if (!PROTOCOLS.includes(merged.protocol)) {
    throw new SimOptionError(`protocol must be one of ${PROTOCOLS.join(', ')}, got ${JSON.stringify(merged.protocol)}`);
  }
  if (!Array.isArray(merged.models) || merged.models.length === 0) {
    throw new SimOptionError('models must be a non-empty list of names');
  }
  for (const m of merged.models) {
    if (typeof m !== 'string' || !MODEL_NAME.test(m)) throw new SimOptionError(`invalid model name ${JSON.stringify(m)}`);
  }
  return Object.freeze({ ...merged, models: Object.freeze([...merged.models]) });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** `'help'` when --help was asked; throws SimOptionError naming the flag otherwise. */
export function parseSimArgs(argv: readonly string[]): SimOptions | 'help' {
  const input: Record<string, unknown> = {};
  let sawPort = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') return 'help';
    if (!arg.startsWith('--')) throw new SimOptionError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    const spec = SPEC_BY_FLAG.get(flag);
    // Boolean flags take no separate value, so `--hang --port 0` is not read as hang="--port".
    const takeValue = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new SimOptionError(`${flag} needs a value`);
      i++;
      return next;
    };
    if (spec !== undefined) {
      const text = spec.kind === 'bool' ? inline : takeValue();
      input[spec.key] = checkValue(spec, fromFlagText(spec, text), flag);
      continue;
    }
    switch (flag) {
      case '--port': {
        const text = takeValue();
        const port = /^\d+$/.test(text) ? Number(text) : NaN;
        if (!(port >= 0 && port <= 65535)) throw new SimOptionError(`--port must be an integer 0..65535, got '${text}'`);
        input.port = port;
        sawPort = true;
        break;
      }
      case '--start-delay-ms': {
        const text = takeValue();
        const ms = /^\d+$/.test(text) ? Number(text) : NaN;
        if (!(ms >= 0 && ms <= 600_000)) throw new SimOptionError(`--start-delay-ms must be an integer 0..600000, got '${text}'`);
        input.startDelayMs = ms;
        break;
      }
      case '--host': {
        const text = takeValue();
        if (text === '') throw new SimOptionError('--host must not be empty');
        input.host = text;
        break;
      }
      case '--protocol': {
        const text = takeValue();
        if (!(PROTOCOLS as readonly string[]).includes(text)) {
          throw new SimOptionError(`--protocol must be one of ${PROTOCOLS.join(', ')}, got '${text}'`);
        }
        input.protocol = text;
        break;
      }
      case '--models': {
        const names = takeValue().split(',').map((s) => s.trim()).filter((s) => s !== '');
        if (names.length === 0) throw new SimOptionError('--models needs at least one name');
        for (const n of names) if (!MODEL_NAME.test(n)) throw new SimOptionError(`--models: invalid model name '${n}'`);
        input.models = names;
        break;
      }
      default:
        throw new SimOptionError(`unknown flag '${flag}'`);
    }
  }
  if (!sawPort) throw new SimOptionError('--port is required (use --port 0 for an ephemeral port)');
  return resolveSimOptions(input as Partial<SimOptions>);
}
