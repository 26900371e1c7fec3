// The dashboard's script, served as /ui/app.js. tsc compiles it with the rest (so it is
// type-checked against the DOM), the browser runs it: it imports nothing. It reads the live
// feed (GET /v1/events/stream) with fetch and a stream reader, because EventSource cannot
// send the Authorization header, and acts through the admin API like any other client.

export {};

// ---------------------------------------------------------------------------------------
// What the admin API answers (the parts shown here)

interface ApiError { code: string; message: string; request_id?: string; field?: string }
interface ReplicaView { id: string; port: number; pid: number | null; state: string; restarts: number; breaker: string | null; last_error: string | null }
interface DeploymentView { id: string; model: string; version: string; runtime: string; state: string; source: string; last_error: string | null; replicas: ReplicaView[] }
interface VersionView { version: string; deployment: string; state: string; ready_replicas: number; weight: number | null; share: number }
interface RolloutView { canary: string; stable: string; status: string; step: number; weight: number; spec: { steps: number[] } }
interface ModelTraffic { model: string; versions: VersionView[]; weights: Record<string, number> | null; stable: string | null; source: string; fallback: string | null; rollout: RolloutView | null }
interface TrafficEvent { at: string; who: string; action: string; from: Record<string, number> | null; to: Record<string, number> | null; why: string }
interface ModelsEvent { models: ModelTraffic[]; events: Record<string, TrafficEvent[]> }
interface DeploymentStats {
  deployment: string; requests: number; errors: number; p50_ms: number | null; p99_ms: number | null; ttft_p50_ms: number | null;
  output_tokens: number; cache_hits: number; cache_misses: number; cost_usd: number; in_flight: number; queued: number;
}
interface StatsEvent { at: string; deployments: DeploymentStats[] }
interface LogLine { stream: string; line: string; at: number; replica: string }

const TOKEN_KEY = 'sluice.admin-token';
/** Rates are taken over this much of the stats history. */
const RATE_WINDOW_MS = 10_000;
const LOG_POLL_MS = 2_000;
const LOG_TAIL = 200;

class ApiFailure extends Error {
  constructor(readonly status: number, readonly error: ApiError) {
    super(error.message);
  }
}

// ---------------------------------------------------------------------------------------
// State

let token = sessionStorage.getItem(TOKEN_KEY);
let deployments: DeploymentView[] = [];
let models: ModelsEvent = { models: [], events: {} };
/** Stats snapshots of the last RATE_WINDOW_MS (and the one just before), oldest first. */
const history: StatsEvent[] = [];
/** Slider positions moved but not applied yet, by model: a feed update must not undo them. */
const pendingWeights = new Map<string, Record<string, number>>();
let feed: AbortController | null = null;
let retryMs = 2_000;
let logsTimer: number | undefined;
/** Which opening of the log tail is shown: a poll of an earlier one (another deployment's) writes nothing and stops. */
let logsOpening = 0;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

// ---------------------------------------------------------------------------------------
// The admin API

function authHeaders(): Record<string, string> {
  return token === null ? {} : { authorization: `Bearer ${token}` };
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers = authHeaders();
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (res.status === 401) askToken();
  if (!res.ok) throw new ApiFailure(res.status, (json as { error?: ApiError } | undefined)?.error ?? { code: `HTTP ${res.status}`, message: text.slice(0, 300) });
  return json as T;
}

function showError(err: unknown): void {
  const e = err instanceof ApiFailure ? err.error : { code: 'error', message: err instanceof Error ? err.message : String(err) };
  $('error-code').textContent = e.code;
  $('error-message').textContent = e.message;
  $('error-request').textContent = e.request_id ?? '-';
  $('error').classList.add('shown');
}

/** Runs an operator's action; its failure is shown, never thrown. */
async function act(what: () => Promise<void>): Promise<void> {
  try {
    await what();
    $('error').classList.remove('shown');
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------------------------------
// Token

function askToken(): void {
  feed?.abort();
  feed = null;
  $('app').classList.add('hidden');
  $('login').classList.remove('hidden');
  $('forget').classList.add('hidden');
  setStatus(token === null ? 'admin token needed' : 'the admin token was refused');
  $<HTMLInputElement>('token').focus();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $<HTMLInputElement>('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $<HTMLInputElement>('token').value = '';
  connect();
});

$('forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  askToken();
});

// ---------------------------------------------------------------------------------------
// The live feed (server-sent events over fetch)

function setStatus(text: string): void {
  $('status').textContent = text;
  $('status').classList.toggle('live', text === 'live');
}

function connect(): void {
  feed?.abort();
  const ac = new AbortController();
  feed = ac;
  void (async () => {
    while (!ac.signal.aborted) {
      try {
        const res = await fetch('/v1/events/stream', { headers: authHeaders(), signal: ac.signal });
        if (res.status === 401) return askToken();
        if (!res.ok || res.body === null) throw new Error(`the live feed answered ${res.status}`);
        $('login').classList.add('hidden');
        $('app').classList.remove('hidden');
        $('forget').classList.toggle('hidden', token === null);
        setStatus('live');
        // The feed may come from a gateway that restarted, whose counts began again at zero:
        // rates against the last process's counts would be negative.
        history.length = 0;
        await readEvents(res.body);
      } catch {
        // Cut (the gateway restarts or stops): connect again below.
      }
      if (ac.signal.aborted) return;
      setStatus('reconnecting');
      await new Promise((r) => setTimeout(r, retryMs));
    }
  })();
}

async function readEvents(body: ReadableStream<Uint8Array>): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue; // a heartbeat
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const v = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = v;
        else if (field === 'data') data.push(v);
        else if (field === 'retry' && Number(v) > 0) retryMs = Number(v);
      }
      if (data.length > 0) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}

function onEvent(name: string, data: unknown): void {
  if (name === 'stats') {
    const s = data as StatsEvent;
    history.push(s);
    const cutoff = Date.parse(s.at) - RATE_WINDOW_MS;
    while (history.length > 2 && Date.parse(history[1]!.at) <= cutoff) history.shift();
    $('updated').textContent = `updated ${new Date(s.at).toLocaleTimeString()}`;
    renderStats();
  } else if (name === 'deployments') {
    deployments = (data as { deployments: DeploymentView[] }).deployments;
    renderDeployments();
    renderStats();
  } else if (name === 'models') {
    models = data as ModelsEvent;
    renderModels();
  }
}

// ---------------------------------------------------------------------------------------
// Rendering (DOM nodes, never HTML strings: names and log lines are shown as text)

type Child = Node | string | null | undefined | false;

function h(tag: string, attrs: Record<string, string | number | boolean | null | undefined> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? '' : String(v));
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const badge = (state: string | null): HTMLElement => h('span', { class: `state ${state ?? ''}` }, state ?? '-');

/**
 * A replica's last error in its row: the first line, cut to the width the page gives it,
 * the whole text on hover. A server that failed to start has its last 20 output lines in
 * it, which in a row that does not wrap made the table thousands of pixels wide, every
 * figure and button of every deployment off the screen.
 */
const why = (error: string): HTMLElement => {
  const eol = error.indexOf('\n');
  return h('span', { class: 'why', title: error }, eol < 0 ? error : `${error.slice(0, eol)} …`);
};

const METRICS = ['rps', 'inflight', 'queued', 'p50', 'p99', 'ttft', 'tokens', 'errors', 'cache', 'cost'] as const;

function renderDeployments(): void {
  const rows: HTMLElement[] = [];
  for (const d of deployments) {
    rows.push(h('tr', { 'data-deployment': d.id },
      h('td', {}, h('b', {}, d.id)),
      h('td', {}, d.runtime),
      h('td', { title: d.last_error ?? '' }, badge(d.state)),
      ...METRICS.map((m) => h('td', { class: 'num', 'data-metric': m }, '-')),
      h('td', {},
        h('button', { type: 'button', 'data-action': 'logs', 'data-id': d.id, 'aria-label': `logs of ${d.id}` }, 'logs'), ' ',
        d.source === 'api' && h('button', { type: 'button', class: 'danger', 'data-action': 'undeploy', 'data-id': d.id, 'aria-label': `undeploy ${d.id}` }, 'undeploy')),
    ));
    for (const r of d.replicas) {
      rows.push(h('tr', { class: 'replica', 'data-replica': r.id },
        h('td', {}, `port ${r.port}`),
        h('td', {}, `pid ${r.pid ?? '-'}`),
        h('td', { title: r.last_error ?? '' }, badge(r.state)),
        h('td', { colspan: METRICS.length + 1 }, `restarts ${r.restarts} · breaker `, badge(r.breaker), r.last_error !== null && ' · ', r.last_error !== null && why(r.last_error))));
    }
  }
  if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: METRICS.length + 4, class: 'muted' }, 'nothing deployed')));
  $('deployments').replaceChildren(...rows);
}

const fixed = (n: number | null | undefined, digits: number): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));
const percent = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

/**
 * Where a deployment's rates start: the oldest snapshot of the window from which its counts
 * run on unbroken (in every snapshot since, never going down), and when it was taken; null
 * before it has two. A deployment undeployed and deployed again under the same id counts
 * from zero: against the old one's counts its rates were negative for the whole window. And
 * one deployed while the page is open gets its rates from its first snapshot, not only once
 * the window's oldest holds it (10 s of '-').
 */
function rateBase(now: DeploymentStats): { readonly before: DeploymentStats; readonly at: string } | null {
  let base: { before: DeploymentStats; at: string } | null = null;
  let later = now;
  for (let i = history.length - 2; i >= 0; i--) {
    const s = history[i]!.deployments.find((o) => o.deployment === now.deployment);
    if (s === undefined || s.requests > later.requests || s.errors > later.errors || s.output_tokens > later.output_tokens) break;
    base = { before: s, at: history[i]!.at };
    later = s;
  }
  return base;
}

/** Fills the metric cells in place: rebuilding the rows every second would eat clicks on their buttons. */
function renderStats(): void {
  const newest = history[history.length - 1];
  if (newest === undefined) return;
  for (const s of newest.deployments) {
    const row = document.querySelector(`tr[data-deployment="${CSS.escape(s.deployment)}"]`);
    if (row === null) continue;
    const base = rateBase(s);
    const before = base?.before;
    const seconds = base === null ? 0 : (Date.parse(newest.at) - Date.parse(base.at)) / 1000;
    const requests = before === undefined ? 0 : s.requests - before.requests;
    const values: Record<(typeof METRICS)[number], string> = {
      rps: seconds > 0 && before !== undefined ? fixed(requests / seconds, 1) : '-',
      inflight: String(s.in_flight),
      queued: String(s.queued),
      p50: fixed(s.p50_ms, 1),
      p99: fixed(s.p99_ms, 1),
      ttft: fixed(s.ttft_p50_ms, 1),
      tokens: seconds > 0 && before !== undefined ? fixed((s.output_tokens - before.output_tokens) / seconds, 1) : '-',
      errors: before === undefined ? '-' : percent(s.errors - before.errors, requests),
      cache: percent(s.cache_hits, s.cache_hits + s.cache_misses),
      cost: fixed(s.cost_usd, 4),
    };
    for (const m of METRICS) {
      const cell = row.querySelector(`[data-metric="${m}"]`);
      if (cell !== null && cell.textContent !== values[m]) cell.textContent = values[m];
    }
  }
}

/**
 * A version being undeployed takes no new request, and the API refuses to weight it (409),
 * at 0 too: its slider is disabled and its weight never sent, or no weight of the model
 * could be applied until its drain ended.
 */
const draining = (v: VersionView): boolean => v.state === 'draining';

/** The weights the sliders show, and "apply weights" sends: of every version but the draining ones. */
function weightsShown(m: ModelTraffic): Record<string, number> {
  const pending = pendingWeights.get(m.model);
  return Object.fromEntries(m.versions.filter((v) => !draining(v)).map((v) => [v.version, pending?.[v.version] ?? v.weight ?? Math.round(v.share * 100)]));
}

function describeWeights(w: Record<string, number> | null): string {
  return w === null ? 'none' : Object.entries(w).map(([v, n]) => `${v}:${n}`).join(' ');
}

/** Rollout forms being filled in, by model: a re-render (a feed event) keeps what was typed. */
const rolloutDrafts = new Map<string, { canary: string; steps: string; interval_s: string }>();

/** Starts a canary rollout of a version that is not the stable one (PUT /v1/models/{model}/rollout). */
function rolloutForm(m: ModelTraffic): HTMLElement | null {
  const candidates = m.versions.filter((v) => v.version !== m.stable);
  if (m.stable === null || candidates.length === 0) return null;
  const draft = rolloutDrafts.get(m.model) ?? { canary: candidates[candidates.length - 1]!.version, steps: '5, 25, 50, 100', interval_s: '60' };
  return h('form', { class: 'row start-rollout', 'data-model': m.model, 'aria-label': `rollout of ${m.model}` },
    h('label', {}, 'canary ', h('select', { name: 'canary', 'aria-label': `canary version of ${m.model}` },
      ...candidates.map((v) => h('option', { value: v.version, selected: v.version === draft.canary }, v.version)))),
    h('label', {}, 'steps (%) ', h('input', { name: 'steps', value: draft.steps, size: 14, 'aria-label': `rollout steps of ${m.model}` })),
    h('label', {}, 'every (s) ', h('input', { name: 'interval_s', type: 'number', min: 0.2, step: 'any', value: draft.interval_s, size: 5, 'aria-label': `rollout interval of ${m.model}` })),
    h('button', { type: 'submit', 'aria-label': `start rollout of ${m.model}` }, 'start rollout'));
}

function renderModels(): void {
  const cards = models.models.map((m) => {
    const shown = weightsShown(m);
    const versions = m.versions.map((v) => h('div', { class: 'weight' },
      h('span', {}, h('b', {}, v.version), ' ', badge(v.state)),
      h('input', {
        type: 'range', min: 0, max: 100, step: 1, value: shown[v.version] ?? 0, disabled: draining(v),
        'data-model': m.model, 'data-version': v.version, 'aria-label': `weight of ${v.deployment}`,
      }),
      h('span', { class: 'num', 'data-weight-of': v.version }, String(shown[v.version] ?? 0)),
      h('span', { class: 'muted', title: 'share of the alias traffic now' }, `${(v.share * 100).toFixed(0)}%`),
      h('button', { type: 'button', 'data-action': 'promote', 'data-model': m.model, 'data-version': v.version, 'aria-label': `promote ${v.deployment}` }, 'promote')));
    const r = m.rollout;
    const running = r !== null && (r.status === 'progressing' || r.status === 'waiting for traffic');
    const rollout = r === null ? null : h('div', { class: 'row rollout' },
      `rollout of ${r.canary} against ${r.stable}: `, badge(r.status),
      ` step ${r.step + 1}/${r.spec.steps.length}, canary at ${r.weight}%`,
      h('progress', { max: 100, value: r.weight, 'aria-label': `rollout of ${m.model}` }),
      running && h('button', { type: 'button', class: 'danger', 'data-action': 'abort', 'data-model': m.model, 'aria-label': `abort rollout of ${m.model}` }, 'abort'));
    const events = (models.events[m.model] ?? []).slice(-8).reverse().map((e) => h('li', { 'data-action-kind': e.action },
      h('span', { class: 'muted' }, new Date(e.at).toLocaleTimeString()), ' ', h('b', {}, e.action), ` by ${e.who}: ${describeWeights(e.from)} → ${describeWeights(e.to)}`,
      h('div', { class: 'muted' }, e.why)));
    return h('div', { class: 'model', 'data-model': m.model },
      h('h3', {}, m.model, ' ', h('span', { class: 'muted' }, `stable ${m.stable ?? '-'} · ${m.source}${m.fallback === null ? '' : ` · fallback to ${m.fallback}`}`)),
      ...versions,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'primary', 'data-action': 'apply', 'data-model': m.model, 'aria-label': `apply weights of ${m.model}` }, 'apply weights'),
        pendingWeights.has(m.model) && h('button', { type: 'button', 'data-action': 'reset', 'data-model': m.model }, 'reset'),
        h('button', { type: 'button', class: 'danger', 'data-action': 'rollback', 'data-model': m.model, 'aria-label': `rollback ${m.model}` }, 'rollback')),
      rollout,
      !running && rolloutForm(m),
      h('ol', { class: 'events', 'aria-label': `events of ${m.model}` }, ...events));
  });
  $('models').replaceChildren(...(cards.length === 0 ? [h('p', { class: 'muted' }, 'no model deployed')] : cards));
}

/** The admin API's answer for one model, shown at once (the feed brings the same a moment later). */
function showModel(view: ModelTraffic): void {
  models = { ...models, models: models.models.map((m) => (m.model === view.model ? view : m)) };
  renderModels();
}

// ---------------------------------------------------------------------------------------
// Actions

$('models').addEventListener('input', (e) => {
  const input = e.target as HTMLInputElement;
  const form = input.form;
  if (form?.classList.contains('start-rollout')) {
    const data = new FormData(form);
    rolloutDrafts.set(form.dataset['model']!, { canary: String(data.get('canary')), steps: String(data.get('steps')), interval_s: String(data.get('interval_s')) });
    return;
  }
  const model = input.dataset['model'];
  const version = input.dataset['version'];
  if (model === undefined || version === undefined) return;
  const m = models.models.find((x) => x.model === model);
  if (m === undefined) return;
  pendingWeights.set(model, { ...weightsShown(m), [version]: Number(input.value) });
  const label = input.parentElement?.querySelector('[data-weight-of]');
  if (label) label.textContent = input.value;
});

$('models').addEventListener('submit', (e) => {
  const form = e.target as HTMLFormElement;
  if (!form.classList.contains('start-rollout')) return;
  e.preventDefault();
  const model = form.dataset['model']!;
  const data = new FormData(form);
  // Steps as typed ("5, 25, 50"); a value that is not a number goes as such, for the API's 400 to name it.
  const steps = String(data.get('steps')).split(/[\s,]+/).filter((x) => x !== '').map((x) => (Number.isFinite(Number(x)) ? Number(x) : x));
  const body = { canary: String(data.get('canary')), steps, interval_s: Number(data.get('interval_s')) };
  void act(async () => {
    pendingWeights.delete(model);
    showModel(await api<ModelTraffic>('PUT', `/v1/models/${encodeURIComponent(model)}/rollout`, body));
    rolloutDrafts.delete(model);
  });
});

document.addEventListener('click', (e) => {
  const button = (e.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
  if (button === null) return;
  const { action, model, version, id } = button.dataset;
  const path = (m: string): string => `/v1/models/${encodeURIComponent(m)}`;
  switch (action) {
    case 'apply': {
      const m = models.models.find((x) => x.model === model);
      if (m === undefined) return;
      void act(async () => {
        showModel(await api<ModelTraffic>('PUT', `${path(m.model)}/traffic`, { weights: weightsShown(m) }));
        pendingWeights.delete(m.model);
        renderModels();
      });
      return;
    }
    case 'reset':
      pendingWeights.delete(model!);
      renderModels();
      return;
    case 'promote':
      void act(async () => {
        pendingWeights.delete(model!);
        showModel(await api<ModelTraffic>('POST', `${path(model!)}/promote`, { version }));
      });
      return;
    case 'rollback':
      void act(async () => {
        pendingWeights.delete(model!);
        showModel(await api<ModelTraffic>('POST', `${path(model!)}/rollback`));
      });
      return;
    case 'abort':
      void act(async () => showModel(await api<ModelTraffic>('DELETE', `${path(model!)}/rollout`)));
      return;
    case 'undeploy':
      if (!confirm(`Undeploy ${id}? Requests in flight get 30 s to finish.`)) return;
      void act(() => api('DELETE', `/v1/deployments/${encodeURIComponent(id!)}`));
      return;
    case 'logs':
      openLogs(id!);
      return;
  }
});

$('deploy-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = new FormData(e.target as HTMLFormElement);
  void act(async () => {
    const extra = String(form.get('extra') ?? '').trim();
    let more: Record<string, unknown> = {};
    if (extra !== '') {
      try {
        more = JSON.parse(extra) as Record<string, unknown>;
      } catch (err) {
        throw new ApiFailure(0, { code: 'not JSON', message: `more fields: ${(err as Error).message}` });
      }
    }
    const spec = { model: form.get('model'), version: form.get('version'), runtime: form.get('runtime'), replicas: Number(form.get('replicas')), ...more };
    await api('POST', '/v1/deployments', spec);
  });
});

$('error-close').addEventListener('click', () => $('error').classList.remove('shown'));

// ---------------------------------------------------------------------------------------
// Log tail

function openLogs(id: string): void {
  clearTimeout(logsTimer);
  // A poll still in flight for the tail shown before (another deployment's, or this one's
  // before a close) must not write its lines under this header, nor go on polling beside it.
  const opening = ++logsOpening;
  $('logs-id').textContent = id;
  $('logs').textContent = '';
  $('logs-section').classList.remove('hidden');
  const poll = async (): Promise<void> => {
    try {
      const { lines } = await api<{ lines: LogLine[] }>('GET', `/v1/deployments/${encodeURIComponent(id)}/logs?tail=${LOG_TAIL}`);
      if (opening !== logsOpening) return;
      const pre = $('logs');
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = lines.map((l) => `${new Date(l.at).toISOString().slice(11, 23)} ${l.replica} ${l.stream === 'stderr' ? '!' : ' '} ${l.line}`).join('\n');
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    } catch (err) {
      if (opening !== logsOpening) return;
      showError(err);
      if (err instanceof ApiFailure && err.status === 404) return; // undeployed: stop polling
    }
    logsTimer = window.setTimeout(() => void poll(), LOG_POLL_MS);
  };
  void poll();
}

$('logs-close').addEventListener('click', () => {
  logsOpening++;
  clearTimeout(logsTimer);
  $('logs-section').classList.add('hidden');
});

connect();
