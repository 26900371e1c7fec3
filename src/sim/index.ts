// The simulator's door: `sluice sim ...` (runSimCli) and in-process use (startSim).
// It stands in for Ollama, OpenAI-compatible servers and MLflow scoring in tests and
// benchmarks, following /work/shared/protocols.md byte for byte where it matters.

import { parseSimArgs, pickTunables, resolveSimOptions, SIM_USAGE, SimOptionError, type SimOptions, type Tunables } from './options.js';
import { Sim } from './server.js';
import type { StatsJson } from './stats.js';

export { parseSimArgs, SIM_DEFAULTS, SimOptionError, type Protocol, type SimOptions, type Tunables } from './options.js';
export type { Cancellation, StatsJson } from './stats.js';

export interface RunningSim {
  readonly port: number;
  /** Stops listening and drops every open connection (hung and streaming ones included). */
  close(): Promise<void>;
  /** The same JSON as `GET /_sim/stats`. */
  stats(): StatsJson;
  /** The same as `POST /_sim/config`, with camelCase keys. */
  configure(patch: Partial<Tunables>): Tunables;
}

/**
 * Starts a simulator in this process. Note that `crashAfter` exits *this* process, as the
 * CLI does; spawn `sluice sim` to test crashes.
 */
export async function startSim(options: Partial<SimOptions> = {}): Promise<RunningSim> {
  const resolved = resolveSimOptions({ logEvents: false, ...options });
  const sim = new Sim(resolved);
  const port = await sim.listen();
  return {
    port,
    close: () => sim.close(),
    stats: () => sim.stats.toJSON(),
    configure: (patch) => {
      const next = resolveSimOptions({ ...resolved, ...sim.tunables, ...patch });
      sim.configure(pickTunables(next));
      return sim.tunables;
    },
  };
}

/** `sluice sim ...`: bad flags print a message naming the flag and set exit code 2. */
export async function runSimCli(argv: string[]): Promise<void> {
  let options: SimOptions | 'help';
  try {
    options = parseSimArgs(argv);
  } catch (err) {
    if (!(err instanceof SimOptionError)) throw err;
    process.stderr.write(`sluice sim: ${err.message}\n${SIM_USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (options === 'help') {
    process.stdout.write(SIM_USAGE);
    return;
  }
  // A supervisor that stops reading our pipes must not crash us with EPIPE.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  const sim = new Sim(options);
  if (options.startDelayMs > 0) await new Promise((r) => setTimeout(r, options.startDelayMs));
  const port = await sim.listen();
  process.stdout.write(JSON.stringify({ event: 'listening', port, protocol: options.protocol }) + '\n');
  // Like `ollama serve`: a stop signal closes at once (open streams are cut) and exits 0.
  const stop = (): void => {
    sim.server.closeAllConnections();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
