// Field checks shared by the folder. Every failure is SLUICE_ERR_INVALID_FIELD naming
// the field, so the admin API can point at the offending key.

import { SluiceError } from '../errors/index.js';

// setTimeout fires at once for delays beyond 2^31-1 ms, which would turn a long
// timeout into none at all.
export const MAX_TIMER_MS = 2_147_483_647;

export function invalid(field: string, message: string): SluiceError {
  return new SluiceError('SLUICE_ERR_INVALID_FIELD', `${field}: ${message}`, { field });
}

export function checkInt(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

export function checkString(field: string, value: unknown, allowEmpty: boolean): string {
  if (typeof value !== 'string' || (!allowEmpty && value === '') || value.includes('\0')) {
    throw invalid(field, allowEmpty ? 'must be a string without NUL' : 'must be a non-empty string without NUL');
  }
  return value;
}

export function checkArgv(field: string, value: unknown): readonly string[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid(field, 'must be a non-empty array of strings');
  return Object.freeze(value.map((arg: unknown, i) => checkString(`${field}[${i}]`, arg, i > 0)));
}

export function checkEnv(field: string, value: unknown): Readonly<Record<string, string>> {
  if (value === undefined) return Object.freeze({});
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(field, 'must be an object of strings');
  const env: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === '' || key.includes('=') || key.includes('\0')) throw invalid(`${field}.${key}`, 'is not a valid variable name');
    env[key] = checkString(`${field}.${key}`, v, true);
  }
  return Object.freeze(env);
}

/** An absolute request path with nothing that Node's HTTP client would refuse to send. */
export function checkPath(field: string, value: unknown): string {
  if (typeof value !== 'string' || !/^\/[\x21-\x7e]*$/.test(value)) {
    throw invalid(field, 'must be an absolute path of printable ASCII, e.g. /ping');
  }
  return value;
}

