// uWebSockets.js, refusing its silent fallback. The registry package falls back to a slow
// Node `http` implementation with only a console warning when the native binary cannot
// load; a gateway that quietly runs at a fraction of its speed is worse than one that
// does not start (DESIGN.md, "Versions that work on Node 20").

import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

const require = createRequire(import.meta.url);

export type UwsModule = typeof UWS;

export interface UwsBinding {
  readonly uws: UwsModule;
  /** True when the native binary is in use. */
  readonly native: boolean;
  readonly binary: string;
}

export function loadUws(allowFallback = process.env.SLUICE_ALLOW_UWS_FALLBACK === '1'): UwsBinding {
  const binary = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  const pkgDir = require.resolve('uWebSockets.js/package.json').replace(/package\.json$/, '');
  let uws: UwsModule;
  let native = true;
  try {
    // Load the binary directly rather than through the package's entry, which would
    // swallow the failure.
    uws = require(`${pkgDir}binaries/${binary}`) as UwsModule;
  } catch (err) {
    if (!allowFallback) {
      throw new Error(`uWebSockets.js native binding ${binary} failed to load (${(err as Error).message}); refusing the slow fallback. Set SLUICE_ALLOW_UWS_FALLBACK=1 to run degraded.`);
    }
    native = false;
    uws = require(`${pkgDir}dist/index.js`) as UwsModule;
  }
  return { uws, native, binary };
}
