// `sluice costs`: what each deployment ran, served and cost (GET /v1/costs).

import type { Command } from 'commander';
import { contextOf } from './context.js';
import { num, printJson, printLine, table } from './output.js';
import type { CostsView } from './views.js';

export function registerCostsCommand(program: Command): void {
  program
    .command('costs')
    .description('cost per deployment: replica hours, predictions, tokens, total and per 1k predictions')
    .action(async (_opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      const body = await ctx.client.get<CostsView>('/v1/costs');
      if (ctx.json) return printJson(body);
      if (body.deployments.length === 0 && body.removed.length === 0) return printLine('no deployments');
      const cur = body.currency.toUpperCase();
      // Undeployed ones follow the live ones, their STATE column saying when they left.
      const rows = [...body.deployments.map((d) => [d.id, d.state, d] as const), ...body.removed.map((d) => [d.id, `undeployed ${d.removed_at}`, d] as const)];
      printLine(table(['ID', 'STATE', 'RUNNING H', 'PREDICTIONS', 'IN TOKENS', 'OUT TOKENS', `TOTAL ${cur}`, `PER 1K ${cur}`, `SAVED ${cur}`], rows.map(([id, state, d]) => [
        id, state, num(d.running_hours, 3), d.predictions, d.input_tokens, d.output_tokens,
        num(d.cost_usd.total, 4), num(d.cost_per_1k_predictions_usd, 4), num(d.saved_by_hibernation_usd, 4),
      ]), ctx.out));
    });
}
