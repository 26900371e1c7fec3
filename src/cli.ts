#!/usr/bin/env node
// Entry point: `sluice <command> [flags]`. The process commands (serve.ts, sim/) are imported
// only when chosen, so that `sluice sim` never loads the gateway and vice versa; every
// other command (deploy, ls, top, ...) and the help are the admin commands of cli/.

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { runServeCli } = await import('./serve.js');
      await runServeCli(rest);
      return;
    }
    case 'sim': {
      const { runSimCli } = await import('./sim/index.js');
      await runSimCli(rest);
      return;
    }
    case 'node-flags': {
      const { runNodeFlagsCli } = await import('./node-flags.js');
      process.exitCode = runNodeFlagsCli(rest);
      return;
    }
    default: {
      const { runAdminCli } = await import('./cli/index.js');
      process.exitCode = await runAdminCli(command === undefined ? ['--help'] : argv);
    }
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
