// The Node (V8) flags sluice should run with; `sluice node-flags` prints them for launch
// scripts (`node $(sluice node-flags) dist/cli.js serve`), and `serve` warns without them.
// V8 reads them only from the command line: neither NODE_OPTIONS (not on its allow-list)
// nor v8.setFlagsFromString (too late once the heap exists) can set them.
//
// --no-memory-reducer: at a steady, moderate rate (5,000 req/s, a tenth of one worker's
// capacity) V8's memory reducer takes the allocation rate for idleness and runs a GC every
// ~650 ms to shrink the heap, then the freed pages fault back in: the data-plane thread
// stalls for 3-15 ms in clusters around each one. Measured open loop on the 2-core bench VM
// (bench/open-loop.ts, GET through one worker): p99 516-579 us and p99.9 4.5-6.9 ms
// without the flag, 241-244 us and 1.4-3.0 ms with it (nginx in the same runs: 147-188 us,
// 0.9-1.5 ms). Closed-loop throughput does not change: under load the reducer never runs.
// The cost: a heap grown by a burst is not shrunk afterwards.
//
// --single-threaded-gc: V8 otherwise hands parts of each collection (parallel scavenges,
// concurrent marking and sweeping) to helper threads and waits for them. sluice keeps one
// busy data-plane thread per core, so under load the helpers only take turns with the
// workers, at the price of posting, waking and joining them. Measured on the 2-core bench
// VM, sluice pinned to one core, AI request as shipped (5 pairs, process CPU): 1.0-2.7 us a
// request less (25.9 -> 24.9 us in a calm pair), 4-8% more requests a second; open loop at
// 5,000 req/s (3 pairs): p99 1.3-1.4 ms against 1.3-2.3 ms, p99.9 4.4-5.5 ms against
// 6.9-13.3 ms. The cost: on a machine with idle cores, a collection is not shortened by
// helpers there: a large old generation (a full response cache) pauses longer.
export const NODE_FLAGS: readonly string[] = Object.freeze(['--no-memory-reducer', '--single-threaded-gc']);

const NODE_FLAGS_USAGE = `Usage: sluice node-flags

Prints the Node flags to run the gateway with, for a launch script:
  node $(sluice node-flags) dist/cli.js serve --config FILE
`;

/** `sluice node-flags [--help]`: writes the flags (or the help); returns the exit status. */
export function runNodeFlagsCli(argv: string[]): number {
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) {
    process.stdout.write(NODE_FLAGS_USAGE);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`sluice node-flags: unexpected argument '${argv[0]}'\n${NODE_FLAGS_USAGE}`);
    return 2; // a usage error, as for every command (cli/errors.ts)
  }
  process.stdout.write(`${NODE_FLAGS.join(' ')}\n`);
  return 0;
}

/** The flags of NODE_FLAGS this process was started without. */
export function missingNodeFlags(): string[] {
  return NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
}
