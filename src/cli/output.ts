// How admin commands print: data on stdout (a borderless table, or the JSON as is with
// --json), progress and errors on stderr. Colour only on a terminal, never with NO_COLOR.

import Table from 'cli-table3';
import pc from 'picocolors';

export type Colors = ReturnType<typeof pc.createColors>;

/** Colours for a stream: on only for a terminal, and off with NO_COLOR set (https://no-color.org). */
export function colorsFor(stream: NodeJS.WriteStream): Colors {
  const noColor = process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '';
  return pc.createColors(stream.isTTY === true && !noColor);
}

const BORDERLESS = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
};

/** Columns padded to their widest cell, like `kubectl get`: easy to read, to grep and to cut. */
export function table(head: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>, c: Colors): string {
  const t = new Table({ head: head.map((h) => c.bold(h)), chars: BORDERLESS, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 } });
  for (const row of rows) t.push(row.map(String));
  return t.toString().split('\n').map((l) => l.trimEnd()).join('\n');
}

/** `key: value` lines, keys padded to one width. */
export function fields(entries: ReadonlyArray<readonly [string, string]>, c: Colors): string {
  const width = Math.max(...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${c.bold(`${k}:`.padEnd(width + 1))} ${v}`).join('\n');
}

/** A state in colour: green when serving, red when failed, yellow on the way. */
export function paintState(state: string, c: Colors): string {
  switch (state) {
    case 'ready': case 'closed': case 'healthy': case 'promoted': return c.green(state);
    case 'failed': case 'unhealthy': case 'open': case 'rolled_back': case 'crashed': return c.red(state);
    default: return c.yellow(state);
  }
}

/** A number for a table cell: `-` for none, `digits` decimals. */
export function num(v: number | null | undefined, digits = 0): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-';
}

/** A ratio as a percentage. */
export function pct(v: number | null | undefined, digits = 1): string {
  return typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : '-';
}

export function text(v: unknown): string {
  return v === null || v === undefined || v === '' ? '-' : String(v);
}

/** A table cell of a text that may span lines (a server's last output): its first line. */
export function firstLine(v: string | null | undefined): string {
  const t = text(v);
  const eol = t.indexOf('\n');
  return eol < 0 ? t : `${t.slice(0, eol)} ...`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(line = ''): void {
  process.stdout.write(`${line}\n`);
}
