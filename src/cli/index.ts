// The admin commands of `sluice` (deploy, ls, status, logs, traffic, keys, costs, top, ...),
// each a thin layer over the admin API. `runAdminCli` parses the command line with
// commander and answers with the process's exit status (see errors.ts).

import { Command, CommanderError } from 'commander';
import { DEFAULT_ADMIN_URL } from './admin-client.js';
import { registerCostsCommand } from './costs.js';
import { registerDeployCommand } from './deploy.js';
import { registerDeploymentCommands } from './deployments.js';
import { CliError, EXIT_CODES } from './errors.js';
import { registerKeyCommands } from './keys.js';
import { colorsFor } from './output.js';
import { registerTopCommand } from './top.js';
import { registerTrafficCommands } from './traffic.js';

export { EXIT_CODES } from './errors.js';

/** The commands cli.ts runs itself (they never load commander), listed in `sluice --help`. */
const PROCESS_COMMANDS = `
Gateway and simulator:
  serve [--config FILE]        run the gateway (data plane + admin API)
  sim --port N [...]           run the model-server simulator
  node-flags                   print the Node flags to run serve with: node $(sluice node-flags) ...`;

const ENVIRONMENT = `
Environment:
  SLUICE_ADMIN_URL             admin API URL (default ${DEFAULT_ADMIN_URL}); --admin-url wins
  SLUICE_ADMIN_TOKEN           admin token, sent as a bearer token (never printed); --token wins
  NO_COLOR                     no colour (there is none either when the output is not a terminal)

Exit status:
  0  done
  ${EXIT_CODES.failed}  the admin API refused or failed the request, or a deployment failed or was not ready in time
  ${EXIT_CODES.usage}  usage error: unknown command or option, bad or missing value
  ${EXIT_CODES.unreachable}  no admin API answered at the URL (nothing did, or something else: the gateway port, another server)
  ${EXIT_CODES.unauthorized}  the admin API refused the token (missing or wrong)`;

export function adminProgram(): Command {
  const program = new Command('sluice')
    .description('sluice: an L7 inference gateway. These commands drive a running gateway through its admin API.')
    .option('--admin-url <url>', `admin API URL (env SLUICE_ADMIN_URL, default ${DEFAULT_ADMIN_URL})`)
    .option('--token <token>', 'admin token (env SLUICE_ADMIN_TOKEN; prefer the variable: a flag shows in ps)')
    .option('--json', 'print JSON for scripts instead of tables')
    .configureHelp({ showGlobalOptions: true })
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(colorsFor(process.stderr).red(text.replace(/^error: /, 'sluice: '))) });
  program.addHelpText('after', `${PROCESS_COMMANDS}\n${ENVIRONMENT}`);
  registerDeployCommand(program);
  registerDeploymentCommands(program);
  registerTrafficCommands(program);
  registerKeyCommands(program);
  registerCostsCommand(program);
  registerTopCommand(program);
  return program;
}

/** Runs one admin command; resolves to the exit status (errors are printed on stderr here). */
export async function runAdminCli(argv: string[]): Promise<number> {
  const program = adminProgram();
  // `sluice logs -f | head`: a reader that went away ends the command, without a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version asked for: 0. Help shown for a command missing its subcommand, or a
      // parse error (commander printed it already): usage.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : EXIT_CODES.usage;
    }
    if (err instanceof CliError) {
      process.stderr.write(`${colorsFor(process.stderr).red(`sluice: ${err.message}`)}\n`);
      return err.exitCode;
    }
    throw err;
  }
}
