// `sluice ls`, `status`, `undeploy`, `logs`: deployments as the admin API shows them
// (GET/DELETE /v1/deployments, /v1/deployments/{id}/logs).

import type { Command } from 'commander';
import { seg } from './admin-client.js';
import { contextOf, type CliContext } from './context.js';
import { positiveInt } from './parse.js';
import { fields, firstLine, paintState, printJson, printLine, table, text } from './output.js';
import type { DeploymentView, LogLineView } from './views.js';

export function registerDeploymentCommands(program: Command): void {
  program
    .command('ls')
    .description('list deployments: state, replicas ready/total, ports')
    .action(async (_opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      const body = await ctx.client.get<{ deployments: DeploymentView[] }>('/v1/deployments');
      if (ctx.json) return printJson(body);
      if (body.deployments.length === 0) return printLine('no deployments');
      printLine(table(['ID', 'MODEL', 'VERSION', 'RUNTIME', 'STATE', 'READY', 'PORTS', 'SOURCE'], body.deployments.map((d) => [
        d.id, d.model, d.version, d.runtime, paintState(d.state, ctx.out), readyOf(d), d.replicas.map((r) => r.port).join(',') || '-', d.source,
      ]), ctx.out));
    });

  program
    .command('status')
    .description('show one deployment in detail, with its replicas (port, pid, state, restarts, breaker)')
    .argument('<id>', 'deployment id, <model>-<version> (e.g. demo-1)')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      const d = await ctx.client.get<DeploymentView>(`/v1/deployments/${seg(id)}`);
      if (ctx.json) return printJson(d);
      printStatus(d, ctx);
    });

  program
    .command('undeploy')
    .description('drain and stop a deployment made through the admin API, and free its ports')
    .argument('<id>', 'deployment id, <model>-<version>')
    .option('--grace <ms>', 'how long requests in flight may finish before its servers stop', positiveInt('--grace', 0, 600_000), 30_000)
    .action(async (id: string, opts: { grace: number }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const body = await ctx.client.request<{ id: string; state: string }>('DELETE', `/v1/deployments/${seg(id)}`, {
        query: { grace_ms: opts.grace }, timeoutMs: opts.grace + 60_000,
      });
      if (ctx.json) return printJson(body);
      printLine(`undeployed ${body.id} (${body.state})`);
    });

  program
    .command('logs')
    .description("print a deployment's recent model-server output (stdout and stderr of every replica)")
    .argument('<id>', 'deployment id, <model>-<version>')
    .option('-n, --tail <lines>', 'how many of the latest lines', positiveInt('--tail', 1, 100_000), 100)
    .option('-f, --follow', 'keep printing new lines until Ctrl-C')
    .option('--interval <ms>', 'how often --follow asks for new lines', positiveInt('--interval', 100), 1000)
    .addHelpText('after', '\nWith --json: the API\'s {"id", "lines": [...]}; with --follow --json, one JSON line per log line.')
    .action(async (id: string, opts: { tail: number; follow?: boolean; interval: number }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const path = `/v1/deployments/${seg(id)}/logs`;
      const first = await ctx.client.get<{ id: string; lines: LogLineView[] }>(path, { query: { tail: opts.tail } });
      if (opts.follow !== true) {
        if (ctx.json) return printJson(first);
        for (const l of first.lines) printLogLine(l, ctx);
        return;
      }
      const seen = new NewLines();
      const print = (l: LogLineView): void => (ctx.json ? printLine(JSON.stringify(l)) : printLogLine(l, ctx));
      seen.since(first.lines).forEach(print);
      for (;;) {
        await new Promise((r) => setTimeout(r, opts.interval));
        // Ask for more than one interval can bring, so that no line falls between two polls.
        const next = await ctx.client.get<{ lines: LogLineView[] }>(path, { query: { tail: 10_000 } });
        seen.since(next.lines).forEach(print);
      }
    });
}

/**
 * The lines of a tail not printed yet. Lines carry the time the gateway read them, and a
 * tail is in that order, so what is new is what came after the latest line printed; lines
 * of that same millisecond are told apart by their text, as a multiset.
 */
export class NewLines {
  #lastAt = -Infinity;
  #atLast: string[] = [];

  since(lines: readonly LogLineView[]): LogLineView[] {
    const fresh: LogLineView[] = [];
    const sameMs = [...this.#atLast];
    for (const l of lines) {
      if (l.at < this.#lastAt) continue;
      if (l.at === this.#lastAt) {
        const i = sameMs.indexOf(keyOf(l));
        if (i >= 0) {
          sameMs.splice(i, 1);
          continue;
        }
      }
      fresh.push(l);
    }
    for (const l of fresh) {
      if (l.at > this.#lastAt) {
        this.#lastAt = l.at;
        this.#atLast = [];
      }
      this.#atLast.push(keyOf(l));
    }
    return fresh;
  }
}

const keyOf = (l: LogLineView): string => `${l.replica}\0${l.stream}\0${l.line}`;

function printLogLine(l: LogLineView, ctx: CliContext): void {
  const line = l.stream === 'stderr' ? ctx.out.red(l.line) : l.line;
  printLine(`${ctx.out.dim(l.replica)} ${line}`);
}

export function readyOf(d: DeploymentView): string {
  return `${d.replicas.filter((r) => r.state === 'ready').length}/${d.replicas.length}`;
}

function printStatus(d: DeploymentView, ctx: CliContext): void {
  const c = ctx.out;
  printLine(fields([
    ['id', d.id],
    ['model', `${d.model} version ${d.version}`],
    ['runtime', d.runtime],
    ['state', paintState(d.state, c)],
    ['replicas', `${readyOf(d)} ready`],
    ['route', d.route],
    ['served model', text(d.served_model)],
    ['source', d.source],
    ['created', text(d.created_at)],
    ...(d.hibernated_since === null ? [] : [['hibernated since', d.hibernated_since] as const]),
    ...(d.shared === null ? [] : [['servers', d.shared.role === 'owner' ? 'run here, shared with this host\'s other instances' : `run by instance ${d.shared.owner ?? '(starting)'} of this host`] as const]),
    ['last error', d.last_error === null ? '-' : c.red(d.last_error)],
  ], c));
  if (d.replicas.length === 0) return;
  printLine();
  printLine(table(['REPLICA', 'PORT', 'PID', 'STATE', 'RESTARTS', 'BREAKER', 'HEALTH', 'LAST ERROR'], d.replicas.map((r) => [
    r.id, r.port, text(r.pid), paintState(r.state, c), r.restarts, r.breaker === null ? '-' : paintState(r.breaker, c),
    r.health === null ? '-' : paintState(r.health.status, c), firstLine(r.last_error ?? r.health?.last_error),
  ]), c));
}
