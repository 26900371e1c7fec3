// Query parameters of admin requests, read strictly: a value that is not what the parameter
// takes is a 400 naming it, never taken for the default.

import { SluiceError } from '../errors/index.js';
import type { AdminRequest } from './server.js';

/** Absent is false; anything but `true` or `false` is refused, not taken for false. */
export function boolParam(req: AdminRequest, name: string): boolean {
  const raw = req.query.get(name);
  if (raw === null || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${name}: must be true or false`, { field: name });
}

export function intParam(req: AdminRequest, name: string, def: number, min: number, max: number): number {
  const raw = req.query.get(name);
  if (raw === null) return def;
  // Decimal digits only: Number() would take '' for 0 and '1e3' or ' 5 ' for numbers.
  const n = /^-?\d{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `${name}: must be an integer ${min}..${max}`, { field: name });
  return n;
}
