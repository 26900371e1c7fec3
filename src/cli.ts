#!/usr/bin/env node
// Entry point: `sluice <command> [flags]`. Each command is its own module (serve.ts, sim/),
// imported only when chosen, so that `sluice sim` never loads the gateway and vice versa.

const USAGE = `usage: sluice <command> [flags]
  serve [--config FILE]                       run the gateway (data plane + admin API)
  sim --port N [--protocol ollama|openai|mlflow] [tunables]   run the model-server simulator
  node-flags                                  print the Node flags to run serve with: node $(sluice node-flags) ...
`;

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
      const { NODE_FLAGS } = await import('./node-flags.js');
      process.stdout.write(`${NODE_FLAGS.join(' ')}\n`);
      return;
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      process.stderr.write(`sluice: unknown command '${command}'\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
