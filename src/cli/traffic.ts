// `sluice traffic`, `promote`, `rollback`, `rollout`: a model's alias traffic and canary
// rollouts (/v1/models/{model}/...).

import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { ROLLOUT_BOUNDS } from '../config/index.js';
import { seg } from './admin-client.js';
import { contextOf, type CliContext } from './context.js';
import { usageError } from './errors.js';
import { decimal, positiveInt } from './parse.js';
import { fields, num, paintState, pct, printJson, printLine, table, text } from './output.js';
import type { ModelView } from './views.js';

interface TrafficOptions {
  sticky?: string;
}

interface RolloutOptions {
  canary?: string;
  steps?: number[];
  interval?: number;
  minRequests?: number;
  maxErrorRate?: number;
  maxLatencyRatio?: number;
  latency?: string;
  failedChecks?: number;
}

export function registerTrafficCommands(program: Command): void {
  program
    .command('traffic')
    .description("show a model's versions and traffic weights, or set them (every model when none is named)")
    .argument('[model]', 'model name (the alias route /<model>/)')
    .argument('[weights...]', 'version=weight pairs to set, e.g. 1=90 2=10')
    .option('--sticky <rule>', 'with weights: keep a user on one version, by `header:<name>` or `api_key`; `none` to stop (default: keep the current rule)')
    .addHelpText('after', `
Examples:
  sluice traffic                       every model, its weights and rollout
  sluice traffic demo                  demo's versions, weights, what is routed now
  sluice traffic demo 1=90 2=10        send 10% of /demo/ to version 2
  sluice traffic demo 1=70 2=30 --sticky header:x-user-id`)
    .action(async (model: string | undefined, pairs: string[], opts: TrafficOptions, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (model === undefined) {
        const body = await ctx.client.get<{ models: ModelView[] }>('/v1/models', { expect: 'models' });
        if (ctx.json) return printJson(body);
        if (body.models.length === 0) return printLine('no models deployed');
        printLine(table(['MODEL', 'VERSIONS', 'WEIGHTS', 'STABLE', 'STICKY', 'ROLLOUT'], body.models.map((m) => [
          m.model, m.versions.map((v) => v.version).join(','), weightsText(m.weights), text(m.stable), stickyText(m.sticky),
          m.rollout === null ? '-' : `${m.rollout.canary} ${paintState(m.rollout.status, ctx.out)}`,
        ]), ctx.out));
        return;
      }
      if (pairs.length === 0) {
        if (opts.sticky !== undefined) throw usageError('traffic: --sticky goes with weights to set (e.g. sluice traffic demo 1=90 2=10 --sticky api_key)');
        return showModel(ctx, await ctx.client.get<ModelView>(`/v1/models/${seg(model)}`, { expect: 'versions' }));
      }
      const weights = weightsOf(pairs);
      // The API sets weights and sticky rule together: keep the current rule unless told.
      const sticky = opts.sticky === undefined ? (await ctx.client.get<ModelView>(`/v1/models/${seg(model)}`, { expect: 'versions' })).sticky : stickyOf(opts.sticky);
      showModel(ctx, await ctx.client.request<ModelView>('PUT', `/v1/models/${seg(model)}/traffic`, { body: { weights, sticky } }));
    });

  program
    .command('promote')
    .description('send all of a model\'s traffic to one version, which becomes its stable version')
    .argument('<model>', 'model name')
    .argument('<version>', 'the version to promote')
    .action(async (model: string, version: string, _opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      showModel(ctx, await ctx.client.request<ModelView>('POST', `/v1/models/${seg(model)}/promote`, { body: { version } }));
    });

  program
    .command('rollback')
    .description("send all of a model's traffic back to its stable version")
    .argument('<model>', 'model name')
    .action(async (model: string, _opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      showModel(ctx, await ctx.client.request<ModelView>('POST', `/v1/models/${seg(model)}/rollback`, { body: {} }));
    });

  program
    .command('rollout')
    .description('start, show or abort a canary rollout of a model (weight steps checked by the gateway)')
    .argument('<model>', 'model name')
    .addArgument(new Argument('<action>', 'start | status | abort').choices(['start', 'status', 'abort']))
    .option('--canary <version>', 'start: the version to roll out (required)')
    .option('--steps <percents>', 'start: canary weights in percent, e.g. 5,25,50,100', stepsOf)
    .option('--interval <s>', 'start: seconds between checks', decimal('--interval', ROLLOUT_BOUNDS.interval_s.min, ROLLOUT_BOUNDS.interval_s.max))
    .option('--min-requests <n>', 'start: canary requests a check needs', positiveInt('--min-requests', ROLLOUT_BOUNDS.min_requests.min, ROLLOUT_BOUNDS.min_requests.max))
    .option('--max-error-rate <ratio>', 'start: highest canary error rate (5xx), 0..1', decimal('--max-error-rate', ROLLOUT_BOUNDS.max_error_rate.min, ROLLOUT_BOUNDS.max_error_rate.max))
    .option('--max-latency-ratio <x>', 'start: highest canary/stable latency ratio', decimal('--max-latency-ratio', ROLLOUT_BOUNDS.max_latency_ratio.min, ROLLOUT_BOUNDS.max_latency_ratio.max))
    .addOption(new Option('--latency <which>', 'start: latency compared').choices(['p99_ttfb', 'p99_total']))
    .option('--failed-checks <n>', 'start: failed checks that roll it back', positiveInt('--failed-checks', ROLLOUT_BOUNDS.failed_checks.min, ROLLOUT_BOUNDS.failed_checks.max))
    .addHelpText('after', `
Options left out take the gateway's defaults (README "Traffic, canary, rollouts").
Examples:
  sluice rollout demo start --canary 2 --steps 5,25,50,100 --interval 60
  sluice rollout demo status
  sluice rollout demo abort            all traffic back to the stable version`)
    .action(async (model: string, action: 'start' | 'status' | 'abort', opts: RolloutOptions, cmd: Command) => {
      const ctx = contextOf(cmd);
      const path = `/v1/models/${seg(model)}`;
      const startOnly = Object.keys(opts);
      if (action !== 'start' && startOnly.length > 0) throw usageError(`rollout ${action}: --${kebab(startOnly[0]!)} is for \`rollout ${model} start\``);
      let view: ModelView;
      if (action === 'start') {
        if (opts.canary === undefined) throw usageError('rollout start needs --canary <version>');
        view = await ctx.client.request<ModelView>('PUT', `${path}/rollout`, { body: rolloutBody(opts) });
      } else if (action === 'abort') {
        view = await ctx.client.request<ModelView>('DELETE', `${path}/rollout`);
      } else {
        view = await ctx.client.get<ModelView>(path, { expect: 'versions' });
      }
      if (ctx.json) return printJson(view);
      showRollout(ctx, view);
    });
}

function weightsOf(pairs: string[]): Record<string, number> {
  const seen = new Set<string>();
  // Entries, not assignments: an assigned `__proto__=1` would set the prototype and vanish.
  return Object.fromEntries(pairs.map((p) => {
    const m = /^([^=]+)=(\d+(?:\.\d+)?)$/.exec(p);
    if (m === null) throw usageError(`traffic: '${p}' is not version=weight (e.g. 1=90)`);
    // `1=90 1=10` for `1=90 2=10`: the later pair would silently win.
    if (seen.has(m[1]!)) throw usageError(`traffic: version ${m[1]} is given more than once`);
    seen.add(m[1]!);
    return [m[1]!, Number(m[2])];
  }));
}

function stickyOf(rule: string): ModelView['sticky'] {
  if (rule === 'none') return null;
  if (rule === 'api_key') return { by: 'api_key' };
  if (rule.startsWith('header:') && rule.length > 'header:'.length) return { by: 'header', name: rule.slice('header:'.length) };
  throw usageError(`--sticky: '${rule}' is not header:<name>, api_key or none`);
}

function stepsOf(raw: string): number[] {
  const steps = raw.split(',').map((s) => (/^\d+(\.\d+)?$/.test(s.trim()) ? Number(s) : NaN));
  if (steps.some((s) => !Number.isFinite(s))) throw new InvalidArgumentError('--steps takes percentages separated by commas, e.g. 5,25,50,100');
  // The rollout API's rule, checked here so that a typo is a usage error before any request.
  if (steps.some((s, i) => s <= 0 || s > 100 || (i > 0 && s <= steps[i - 1]!))) throw new InvalidArgumentError('--steps: each percentage above 0 and above the one before it, at most 100');
  return steps;
}

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The rollout's body: only the fields given, so the gateway's defaults apply to the rest. */
function rolloutBody(o: RolloutOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const fieldOf: Record<keyof RolloutOptions, string> = {
    canary: 'canary', steps: 'steps', interval: 'interval_s', minRequests: 'min_requests', maxErrorRate: 'max_error_rate',
    maxLatencyRatio: 'max_latency_ratio', latency: 'latency', failedChecks: 'failed_checks',
  };
  for (const [k, v] of Object.entries(o)) if (v !== undefined) body[fieldOf[k as keyof RolloutOptions]] = v;
  return body;
}

function weightsText(w: Record<string, number> | null): string {
  return w === null ? 'newest ready' : Object.entries(w).map(([v, n]) => `${v}=${n}`).join(' ');
}

function stickyText(s: ModelView['sticky']): string {
  return s === null ? '-' : s.by === 'header' ? `header ${s.name}` : 'api_key';
}

function showModel(ctx: CliContext, m: ModelView): void {
  if (ctx.json) return printJson(m);
  const c = ctx.out;
  printLine(fields([
    ['model', m.model],
    ['stable', text(m.stable)],
    ['sticky', stickyText(m.sticky)],
    ['weights from', m.source],
    ['rollout', m.rollout === null ? '-' : `${m.rollout.canary} ${paintState(m.rollout.status, c)} at ${m.rollout.weight}%`],
  ], c));
  printLine();
  printLine(table(['VERSION', 'DEPLOYMENT', 'STATE', 'READY', 'WEIGHT', 'SHARE'], m.versions.map((v) => [
    v.version, v.deployment, paintState(v.state, c), v.ready_replicas, v.weight === null ? '-' : num(v.weight, Number.isInteger(v.weight) ? 0 : 2), pct(v.share),
  ]), c));
}

function showRollout(ctx: CliContext, m: ModelView): void {
  const r = m.rollout;
  if (r === null) return printLine(`no rollout of ${m.model}`);
  const c = ctx.out;
  printLine(fields([
    ['model', m.model],
    ['canary', `${r.canary} (stable ${r.stable})`],
    ['status', paintState(r.status, c)],
    ['step', `${r.step + 1} of ${r.spec.steps.length} (${r.spec.steps.join(', ')}%), canary at ${r.weight}%`],
    ['failed checks', String(r.failed_checks)],
    ['started', r.started_at],
    ['finished', text(r.finished_at)],
  ], c));
  if (r.checks.length === 0) return;
  printLine();
  printLine(table(['AT', 'STEP', 'WEIGHT', 'VERDICT', 'WHY'], r.checks.map((k) => [k.at, k.step + 1, `${k.weight}%`, paintState(k.verdict, c), k.why]), c));
}
