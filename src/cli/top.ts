// `sluice top`: per deployment, rates between two successive polls of GET /v1/stats
// (cumulative figures since the gateway started) and its latency quantiles, refreshed
// every --interval seconds on a terminal until q or Ctrl-C; one snapshot (after two
// polls) with --once or when stdout is not a terminal.

import type { Command } from 'commander';
import type { AdminClient } from './admin-client.js';
import { contextOf, type CliContext } from './context.js';
import { decimal } from './parse.js';
import { num, paintState, pct, printJson, printLine, table } from './output.js';
import type { DeploymentStats, StatsView } from './views.js';

/** One deployment's row: rates over the last interval, quantiles since the gateway started. `--json` prints these. */
export interface TopRow {
  deployment: string;
  model: string;
  version: string;
  state: string;
  rps: number;
  /** 5xx answers / requests over the interval; null without requests. */
  error_rate: number | null;
  p99_ms: number | null;
  ttft_p50_ms: number | null;
  ttft_p99_ms: number | null;
  output_tokens_per_s: number;
  in_flight: number;
  queued: number;
}

type Counts = Pick<DeploymentStats, 'requests' | 'errors' | 'output_tokens'>;
const ZERO: Counts = { requests: 0, errors: 0, output_tokens: 0 };

/** The rows between two polls; a deployment new in `now` counts from zero. */
export function topRows(before: StatsView, now: StatsView): TopRow[] {
  const seconds = Math.max((Date.parse(now.at) - Date.parse(before.at)) / 1000, 1e-3);
  const prev = new Map(before.deployments.map((d) => [d.deployment, d]));
  return now.deployments.map((d) => {
    const last: Counts = prev.get(d.deployment) ?? ZERO;
    // Counts that went down began again from zero between the polls: a restarted gateway, or
    // a deployment undeployed and deployed again under the same id. What they hold is what
    // came since (clamping the difference to 0 showed no traffic, however much there was).
    const p = d.requests < last.requests || d.errors < last.errors || d.output_tokens < last.output_tokens ? ZERO : last;
    const requests = d.requests - p.requests;
    return {
      deployment: d.deployment, model: d.model, version: d.version, state: d.state,
      rps: requests / seconds,
      error_rate: requests > 0 ? (d.errors - p.errors) / requests : null,
      p99_ms: d.p99_ms, ttft_p50_ms: d.ttft_p50_ms, ttft_p99_ms: d.ttft_p99_ms,
      output_tokens_per_s: (d.output_tokens - p.output_tokens) / seconds,
      in_flight: d.in_flight, queued: d.queued,
    };
  });
}

export function registerTopCommand(program: Command): void {
  program
    .command('top')
    .description('live table per deployment: rps, error rate, p99, TTFT p50/p99, tokens/s, in flight, queued (q or Ctrl-C quits)')
    .option('-i, --interval <s>', 'seconds between refreshes', decimal('--interval', 0.1), 1)
    .option('--once', 'print one snapshot (after two polls) and exit; the default when stdout is not a terminal')
    .addHelpText('after', `
Rates (RPS, ERR%, TOK/S) are over the last interval; P99, TTFT P50/P99 are since the
gateway started (GET /v1/stats). With --json (implies --once): {"at", "interval_s",
"deployments": [{deployment, model, version, state, rps, error_rate, p99_ms, ttft_p50_ms,
ttft_p99_ms, output_tokens_per_s, in_flight, queued}]}.`)
    .action(async (opts: { interval: number; once?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const intervalMs = opts.interval * 1000;
      if (opts.once === true || ctx.json || process.stdout.isTTY !== true || process.stdin.isTTY !== true) {
        const before = await stats(ctx.client);
        await sleep(intervalMs);
        const now = await stats(ctx.client);
        const rows = topRows(before, now);
        if (ctx.json) return printJson({ at: now.at, interval_s: opts.interval, deployments: rows });
        return printLine(render(ctx, rows, now.at));
      }
      await live(ctx, intervalMs);
    });
}

const stats = (client: AdminClient, signal?: AbortSignal): Promise<StatsView> => client.get<StatsView>('/v1/stats', signal === undefined ? {} : { signal });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function render(ctx: CliContext, rows: TopRow[], at: string): string {
  const c = ctx.out;
  if (rows.length === 0) return `${at}  no deployments`;
  return `${c.dim(`${ctx.client.shownUrl}  ${at}`)}\n${table(
    ['DEPLOYMENT', 'STATE', 'RPS', 'ERR%', 'P99 MS', 'TTFT P50', 'TTFT P99', 'TOK/S', 'IN FLIGHT', 'QUEUED'],
    rows.map((r) => [
      r.deployment, paintState(r.state, c), num(r.rps, 1), r.error_rate !== null && r.error_rate > 0 ? c.red(pct(r.error_rate)) : pct(r.error_rate),
      num(r.p99_ms, 1), num(r.ttft_p50_ms, 1), num(r.ttft_p99_ms, 1), num(r.output_tokens_per_s, 1), r.in_flight, r.queued,
    ]),
    c,
  )}`;
}

/**
 * The full-screen view: the alternate screen, redrawn each interval; q, Ctrl-C or SIGTERM
 * restore the terminal and exit 0, at once, a poll in flight included: a hung admin API
 * (up to the client's 60 s) held the raw-mode terminal, where Ctrl-C sends no SIGINT.
 */
async function live(ctx: CliContext, intervalMs: number): Promise<void> {
  const out = process.stdout;
  const stdin = process.stdin;
  let stopped = false;
  let wake: (() => void) | null = null;
  const quit = new AbortController();
  const stop = (): void => {
    stopped = true;
    quit.abort();
    wake?.();
  };
  const onKey = (key: Buffer): void => {
    const k = key.toString('utf8');
    if (k === 'q' || k === 'Q' || k === '\u0003') stop();
  };
  out.write('\x1b[?1049h\x1b[?25l');
  stdin.setRawMode(true);
  stdin.resume();
  stdin.on('data', onKey);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    out.write(`\x1b[H\x1b[2J${ctx.out.dim(`${ctx.client.shownUrl}  collecting...`)}\n`);
    let before = await stats(ctx.client, quit.signal);
    while (!stopped) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (stopped) break;
      const now = await stats(ctx.client, quit.signal);
      out.write(`\x1b[H\x1b[2J${render(ctx, topRows(before, now), now.at)}\n${ctx.out.dim('q to quit')}\n`);
      before = now;
    }
  } catch (err) {
    // Quit while a poll was waiting: as any quit.
    if (!quit.signal.aborted) throw err;
  } finally {
    stdin.off('data', onKey);
    stdin.setRawMode(false);
    stdin.pause();
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    out.write('\x1b[?25h\x1b[?1049l');
  }
}
