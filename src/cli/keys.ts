// `sluice keys ls|add|rm`: client API keys (/v1/keys). A generated key is printed once,
// when it is made; the gateway keeps only its digest.

import type { Command } from 'commander';
import { seg } from './admin-client.js';
import { contextOf } from './context.js';
import { decimal } from './parse.js';
import { printJson, printLine, table, text } from './output.js';
import type { KeyView } from './views.js';

interface AddOptions {
  deployments?: string;
  keySha256?: string;
  rps?: number;
  rpm?: number;
  tpm?: number;
}

export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('list, add and remove client API keys');

  keys
    .command('ls')
    .description('list API keys: name, label, deployments, limits (over all its deployments, and on each), source')
    .action(async (_opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      const body = await ctx.client.get<{ keys: KeyView[] }>('/v1/keys');
      if (ctx.json) return printJson(body);
      if (body.keys.length === 0) return printLine('no API keys');
      // Both kinds of limit: a key limited on each deployment alone (deployment_limits) showed
      // '-', as if it had none.
      printLine(table(['NAME', 'LABEL', 'DEPLOYMENTS', 'LIMITS', 'PER DEPLOYMENT', 'SOURCE', 'CREATED'], body.keys.map((k) => [
        k.name, k.label, k.deployments.join(','), limitsText(k.limits), limitsText(k.deployment_limits), k.source, text(k.created_at),
      ]), ctx.out));
    });

  keys
    .command('add')
    .description('add an API key; without --key-sha256 the gateway generates one and it is printed this once')
    .argument('<name>', 'the key\'s name (letters, digits, . _ : -)')
    .option('--deployments <list>', 'deployment ids or model names it may use, comma-separated (default: all)')
    .option('--key-sha256 <hex>', 'bring your own key: its SHA-256 in hex')
    .option('--rps <n>', 'requests per second limit', decimal('--rps', 0))
    .option('--rpm <n>', 'requests per minute limit', decimal('--rpm', 0))
    .option('--tpm <n>', 'tokens per minute limit', decimal('--tpm', 0))
    .addHelpText('after', '\nWith --json: the API\'s answer, with "key" when the gateway generated it.')
    .action(async (name: string, opts: AddOptions, cmd: Command) => {
      const ctx = contextOf(cmd);
      const body: Record<string, unknown> = { name };
      if (opts.deployments !== undefined) body['deployments'] = opts.deployments.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (opts.keySha256 !== undefined) body['key_sha256'] = opts.keySha256;
      const limits: Record<string, number> = {};
      if (opts.rps !== undefined) limits['requests_per_second'] = opts.rps;
      if (opts.rpm !== undefined) limits['requests_per_minute'] = opts.rpm;
      if (opts.tpm !== undefined) limits['tokens_per_minute'] = opts.tpm;
      if (Object.keys(limits).length > 0) body['limits'] = limits;
      const k = await ctx.client.request<KeyView>('POST', '/v1/keys', { body });
      if (ctx.json) return printJson(k);
      printLine(`added API key ${k.name} (${k.label})`);
      if (k.key !== undefined) printLine(`key: ${k.key}\n(shown this once: the gateway keeps only its digest)`);
    });

  keys
    .command('rm')
    .description('remove an API key: refused from the next request on')
    .argument('<name>', 'the key\'s name')
    .action(async (name: string, _opts, cmd: Command) => {
      const ctx = contextOf(cmd);
      const k = await ctx.client.request<KeyView & { state: string }>('DELETE', `/v1/keys/${seg(name)}`);
      if (ctx.json) return printJson(k);
      printLine(`removed API key ${k.name}`);
    });
}

function limitsText(limits: Record<string, number>): string {
  const short: Record<string, string> = { requests_per_second: 'rps', requests_per_minute: 'rpm', tokens_per_minute: 'tpm' };
  const set = Object.entries(limits).filter(([, v]) => v > 0).map(([k, v]) => `${short[k] ?? k}=${v}`);
  return set.length === 0 ? '-' : set.join(' ');
}
