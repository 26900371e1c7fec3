// Progress goes to stderr so that stdout carries only the result (the table, or the single
// JSON object of `--json`).

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
