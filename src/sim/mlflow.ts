// MLflow's scoring server (protocols.md part A2): /ping, /health, /version and
// POST /invocations with the content-type rules, 415 texts and 400 `{"error_code",
// "message"}` bodies of mlflow/pyfunc/scoring_server. Predictions are fake but
// deterministic: one number per input row, the sum of the row's numbers.

import { isObject, parseJson, pythonJsonError, readBody } from './body.js';
import { unixSeconds } from './clock.js';
import type { Handler, Route, SimContext } from './context.js';
import { contentWords, countWords, DEFAULT_EMBEDDING_DIMS, embedding, responseText } from './fake.js';
import { type Exchange, JSON_PLAIN, pythonJson, send, TEXT_UTF8 } from './http.js';
import { afterDelay, planTokens } from './stream.js';

export const MLFLOW_VERSION = '2.21.3';

const SUPPORTED_FORMATS = ['dataframe_split', 'instances', 'inputs', 'dataframe_records'] as const;
const LLM_KEYS = ['messages', 'prompt', 'input'] as const;

// Python prints the set of supported formats; this is the order protocols.md quotes.
const REQUIRED_INPUT_FORMAT =
  "The input must be a JSON dictionary with exactly one of the input fields {'dataframe_split', 'instances', 'inputs', 'dataframe_records'}";

const SCORING_PROTOCOL_CHANGE_INFO =
  'IMPORTANT: The MLflow Model scoring protocol has changed in MLflow version 2.0. If you are' +
  ' seeing this error, you are likely using an outdated scoring request format. To resolve the' +
  " error, either update your request format or adjust your MLflow Model's requirements file to" +
  " specify an older version of MLflow (for example, change the 'mlflow' requirement specifier" +
  " to 'mlflow==1.30.0'). If you are making a request using the MLflow client" +
  ' (e.g. via `mlflow.pyfunc.spark_udf()`), upgrade your MLflow client to a version >= 2.0 in' +
  ' order to use the new request format. For more information about the updated MLflow' +
  ' Model scoring protocol in MLflow 2.0, see' +
  ' https://mlflow.org/docs/latest/models.html#deploy-mlflow-models.';

const PREDICT_FAILED =
  'Encountered an unexpected error while evaluating the model. Verify that the serialized input' +
  ' Dataframe is compatible with the model for inference.';

const SINGLE_QUOTE = /'/g;
const LINE_BREAK = /\r?\n/;

/** Python's repr of a list of strings: `['a', 'b']`. */
function pyStrList(items: readonly string[]): string {
  const repr = (s: string): string => (s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replace(SINGLE_QUOTE, "\\'")}'`);
  return '[' + items.map(repr).join(', ') + ']';
}

function pyTypeName(v: unknown): string {
  if (v === null) return 'NoneType';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  return 'dict';
}

function badRequest(ex: Exchange, message: string, stackTrace?: string): void {
  const body: Record<string, string> = { error_code: 'BAD_REQUEST', message };
  if (stackTrace !== undefined) body.stack_trace = stackTrace;
  send(ex.res, 400, JSON_PLAIN, pythonJson(body));
}

function predictFailed(ex: Exchange, why: string): void {
  badRequest(ex, PREDICT_FAILED, `Traceback (most recent call last):\n  File "sluice-sim", line 1, in predict\nValueError: ${why}\n`);
}

function sumNumbers(v: unknown, depth = 0): number {
  if (typeof v === 'number') return v;
  if (depth > 32 || typeof v !== 'object' || v === null) return 0;
  let s = 0;
  if (Array.isArray(v)) for (const x of v) s += sumNumbers(x, depth + 1);
  else for (const k in v) s += sumNumbers((v as Record<string, unknown>)[k], depth + 1);
  return s;
}

function roundPrediction(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** Rows of a tensor-style (`instances`/`inputs`) value: a list of rows, or columns by name. */
function tensorRows(v: unknown): unknown[] | string {
  if (Array.isArray(v)) return v;
  if (isObject(v)) {
    // Columns by name: as many rows as the longest column, one row if all are scalars.
    const cols = Object.values(v);
    let n = 0;
    let anyList = false;
    for (const c of cols) {
      if (Array.isArray(c)) {
        anyList = true;
        n = Math.max(n, c.length);
      }
    }
    if (!anyList) n = 1;
    const rows: unknown[] = [];
    for (let i = 0; i < n; i++) rows.push(cols.map((c) => (Array.isArray(c) ? c[i] : c)));
    return rows;
  }
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return [v];
  return 'input has no rows';
}

function rowsOf(format: (typeof SUPPORTED_FORMATS)[number], v: unknown): unknown[] | string {
  switch (format) {
    case 'dataframe_split':
      if (!isObject(v) || !Array.isArray(v.data)) return "dataframe_split must be an object with a 'data' list";
      return v.data;
    case 'dataframe_records':
      if (!Array.isArray(v)) return 'dataframe_records must be a list of records';
      return v;
    case 'instances':
    case 'inputs':
      return tensorRows(v);
  }
}

/** Rows of a CSV body with a header line (pandas.read_csv semantics, simplified). */
function csvRows(text: string): unknown[][] | string {
  const lines = text.split(LINE_BREAK).filter((l) => l.trim() !== '');
  if (lines.length === 0) return 'No columns to parse from file';
  return lines.slice(1).map((l) => l.split(',').map((cell) => (cell.trim() !== '' && !Number.isNaN(Number(cell)) ? Number(cell) : cell)));
}

function respondPredictions(sim: SimContext, ex: Exchange, rows: readonly unknown[]): void {
  afterDelay(ex, sim.tunables.ttftMs, (e) => {
    const predictions = rows.map((r) => roundPrediction(sumNumbers(r)));
    send(e.res, 200, JSON_PLAIN, pythonJson({ predictions }));
  });
}

/** "Unified LLM" bodies (messages / prompt / input) are answered without `predictions`. */
function respondUnified(sim: SimContext, ex: Exchange, body: Record<string, unknown>): void {
  const plan = planTokens(sim.tunables.tokens, body.max_tokens);
  afterDelay(ex, sim.tunables.ttftMs, (e) => {
    let out: unknown;
    if (Array.isArray(body.messages)) {
      let prompt = 0;
      for (const m of body.messages) if (isObject(m)) prompt += contentWords(m.content);
      out = {
        id: 'chatcmpl-sim', object: 'chat.completion', created: unixSeconds(), model: 'sim',
        choices: [{ index: 0, message: { role: 'assistant', content: responseText(plan.count) }, finish_reason: plan.reason }],
        usage: { prompt_tokens: prompt, completion_tokens: plan.count, total_tokens: prompt + plan.count },
      };
    } else if (body.prompt !== undefined) {
      const prompt = typeof body.prompt === 'string' ? countWords(body.prompt) : 1;
      out = {
        id: 'cmpl-sim', object: 'text_completion', created: unixSeconds(), model: 'sim',
        choices: [{ index: 0, text: responseText(plan.count), finish_reason: plan.reason }],
        usage: { prompt_tokens: prompt, completion_tokens: plan.count, total_tokens: prompt + plan.count },
      };
    } else {
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      out = {
        object: 'list',
        data: inputs.map((x, index) => ({ object: 'embedding', index, embedding: embedding(String(x), DEFAULT_EMBEDDING_DIMS, true) })),
        usage: { prompt_tokens: inputs.length, total_tokens: inputs.length },
      };
    }
    send(e.res, 200, JSON_PLAIN, pythonJson(out));
  });
}

function onInvocationsBody(sim: SimContext, ex: Exchange, raw: Buffer, csv: boolean): void {
  const text = raw.toString('utf8');
  if (csv) {
    const rows = csvRows(text);
    if (typeof rows === 'string') {
      badRequest(
        ex,
        'Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV-formatted Pandas DataFrame' +
          ` produced using the \`pandas.DataFrame.to_csv()\` method. Error: '${rows}'`,
        `Traceback (most recent call last):\n  File "sluice-sim", line 1, in parse_csv_input\npandas.errors.EmptyDataError: ${rows}\n`,
      );
      return;
    }
    respondPredictions(sim, ex, rows);
    return;
  }
  const parsed = parseJson(text);
  if (!parsed.ok) {
    badRequest(ex, `Invalid input. Ensure that input is a valid JSON formatted string. Error: '${pythonJsonError(text, parsed.error)}'\nInput: \n${text}\n`);
    return;
  }
  const body = parsed.value;
  if (Array.isArray(body)) {
    badRequest(ex, `Invalid input. ${REQUIRED_INPUT_FORMAT}. Received a list.`);
    return;
  }
  if (!isObject(body)) {
    badRequest(ex, `Invalid input. ${REQUIRED_INPUT_FORMAT}. Received unexpected input type '<class '${pyTypeName(body)}'>.`);
    return;
  }
  for (const k of LLM_KEYS) {
    if (k in body) {
      respondUnified(sim, ex, body);
      return;
    }
  }
  const present = Object.keys(body).filter((k) => (SUPPORTED_FORMATS as readonly string[]).includes(k));
  if (present.length !== 1) {
    badRequest(ex, `${REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: ${pyStrList(present)}. ${SCORING_PROTOCOL_CHANGE_INFO}`);
    return;
  }
  const format = present[0] as (typeof SUPPORTED_FORMATS)[number];
  const rows = rowsOf(format, body[format]);
  if (typeof rows === 'string') {
    predictFailed(ex, rows);
    return;
  }
  respondPredictions(sim, ex, rows);
}

function onJsonBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  onInvocationsBody(sim, ex, raw, false);
}

function onCsvBody(sim: SimContext, ex: Exchange, raw: Buffer): void {
  onInvocationsBody(sim, ex, raw, true);
}

const CONTENT_TYPES_TEXT = "Types: ['text/csv', 'application/json']";

const invocations: Handler = (sim, ex) => {
  const contentType = ex.req.headers['content-type'];
  if (contentType === undefined) {
    // The real server calls .split() on None: an unhandled exception, the framework's 500.
    send(ex.res, 500, TEXT_UTF8, 'Internal Server Error');
    return;
  }
  const parts = contentType.split(';').map((p) => p.trim());
  const mime = parts[0]!;
  const params = new Map<string, string>();
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    const eq = p.indexOf('=');
    params.set(eq === -1 ? p : p.slice(0, eq), eq === -1 ? '' : p.slice(eq + 1));
  }
  if ((params.get('charset') ?? 'utf-8').toLowerCase() !== 'utf-8') {
    send(ex.res, 415, TEXT_UTF8, 'The scoring server only supports UTF-8');
    return;
  }
  const unexpected = [...params.keys()].filter((k) => k !== 'charset');
  if (unexpected.length > 0) {
    send(ex.res, 415, TEXT_UTF8, `Unrecognized content type parameters: ${unexpected.join(', ')}. ${SCORING_PROTOCOL_CHANGE_INFO}`);
    return;
  }
  if (mime === 'application/json') readBody(sim, ex, onJsonBody);
  else if (mime === 'text/csv') readBody(sim, ex, onCsvBody);
  else {
    send(ex.res, 415, TEXT_UTF8, `This predictor only supports the following content types: ${CONTENT_TYPES_TEXT}. Got '${contentType}'.`);
  }
};

// Not JSON although labelled so: exactly what MLflow sends.
const ping: Handler = (_sim, ex) => send(ex.res, 200, JSON_PLAIN, '\n');
const version: Handler = (_sim, ex) => send(ex.res, 200, JSON_PLAIN, MLFLOW_VERSION);

export function mlflowRoutes(): Map<string, Route> {
  const plain = (h: Handler): Route => ({ methods: { GET: h }, generation: false, style: 'mlflow' });
  return new Map<string, Route>([
    ['/ping', plain(ping)],
    ['/health', plain(ping)],
    ['/version', plain(version)],
    ['/invocations', { methods: { POST: invocations }, generation: true, style: 'mlflow' }],
  ]);
}

/** FastAPI's defaults for an unknown path or method. */
export function mlflowNotFound(ex: Exchange, methodNotAllowed: boolean): void {
  if (methodNotAllowed) send(ex.res, 405, JSON_PLAIN, '{"detail":"Method Not Allowed"}');
  else send(ex.res, 404, JSON_PLAIN, '{"detail":"Not Found"}');
}
