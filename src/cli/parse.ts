// Option values checked as they are parsed: a bad one is a usage error (exit 2) naming the
// option, before any request is sent.

import { InvalidArgumentError } from 'commander';

/**
 * An integer >= min, in decimal digits only ('1e3' or '' are not taken for numbers), and at
 * most `max`: the admin API's own bound, so that a value it would refuse is a usage error.
 */
export function positiveInt(option: string, min: number, max = Number.MAX_SAFE_INTEGER): (raw: string) => number {
  return (raw) => {
    const n = /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${option} must be an integer >= ${min}${max === Number.MAX_SAFE_INTEGER ? '' : `, at most ${max}`}`);
    return n;
  };
}

/** A finite decimal number >= min. */
export function decimal(option: string, min: number, max = Infinity): (raw: string) => number {
  return (raw) => {
    const n = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${option} must be a number ${min}..${max}`);
    return n;
  };
}

/** A repeatable option: each use adds one value. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `KEY=VALUE`, repeatable, into a map. */
export function keyValue(option: string): (raw: string, previous?: Record<string, string>) => Record<string, string> {
  return (raw, previous = {}) => {
    const eq = raw.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`${option} takes KEY=VALUE, got '${raw}'`);
    return { ...previous, [raw.slice(0, eq)]: raw.slice(eq + 1) };
  };
}
