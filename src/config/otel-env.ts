// The standard OpenTelemetry environment variables, as overrides of config `tracing`: the
// same variables an operator sets for any OTel SDK (a Kubernetes pod spec, a collector
// sidecar's conventions) work for sluice, and they win over the file as SLUICE_* do.
// Resolved once here, in the control plane: the workers get plain settings and their SDK
// reads no variable that could disagree (see tracing/provider.ts).

import { ConfigError } from './schema.js';

/** One override: the config path, the value, and the variable it came from (named in errors). */
export type EnvOverride = readonly [path: readonly string[], value: unknown, variable: string];

const TRACING = 'tracing';

/** OTEL_TRACES_SAMPLER values: [parent_based, ratio (null: OTEL_TRACES_SAMPLER_ARG or the config's)]. */
const SAMPLERS: ReadonlyMap<string, readonly [boolean, number | null]> = new Map([
  ['always_on', [false, 1]],
  ['always_off', [false, 0]],
  ['traceidratio', [false, null]],
  ['parentbased_always_on', [true, 1]],
  ['parentbased_always_off', [true, 0]],
  ['parentbased_traceidratio', [true, null]],
]);

export function otelOverrides(env: NodeJS.ProcessEnv): EnvOverride[] {
  const out: EnvOverride[] = [];
  const set = (field: string, value: unknown, variable: string): void => {
    out.push([[TRACING, field], value, variable]);
  };
  const value = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };

  // The spec's switch is OTEL_SDK_DISABLED=true; tracing being off by default here,
  // OTEL_SDK_DISABLED=false turns it on without a config file.
  const disabled = value('OTEL_SDK_DISABLED')?.toLowerCase();
  if (disabled === 'true') set('enabled', false, 'OTEL_SDK_DISABLED');
  else if (disabled === 'false') set('enabled', true, 'OTEL_SDK_DISABLED');
  const exporter = value('OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (exporter === 'none') set('enabled', false, 'OTEL_TRACES_EXPORTER');
  else if (exporter !== undefined && exporter !== 'otlp') throw new ConfigError('tracing', `OTEL_TRACES_EXPORTER: only otlp (OTLP/HTTP, protobuf) or none, got '${exporter}'`);

  // The spec's order: OTEL_SERVICE_NAME, then service.name in OTEL_RESOURCE_ATTRIBUTES (the
  // SDK would read that one too, but the config's name, default included, is set over it).
  const service = value('OTEL_SERVICE_NAME');
  const resourceService = resourceServiceName(value('OTEL_RESOURCE_ATTRIBUTES'));
  if (service !== undefined) set('service_name', service, 'OTEL_SERVICE_NAME');
  else if (resourceService !== undefined) set('service_name', resourceService, 'OTEL_RESOURCE_ATTRIBUTES');

  const tracesEndpoint = value('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const baseEndpoint = value('OTEL_EXPORTER_OTLP_ENDPOINT');
  // The signal's own URL is used as given; the base one gets the signal's path (OTLP exporter spec).
  if (tracesEndpoint !== undefined) set('endpoint', tracesEndpoint, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  else if (baseEndpoint !== undefined) set('endpoint', `${baseEndpoint.replace(/\/+$/, '')}/v1/traces`, 'OTEL_EXPORTER_OTLP_ENDPOINT');

  const baseHeaders = value('OTEL_EXPORTER_OTLP_HEADERS');
  const tracesHeaders = value('OTEL_EXPORTER_OTLP_TRACES_HEADERS');
  if (baseHeaders !== undefined || tracesHeaders !== undefined) {
    const headers = {
      ...(baseHeaders === undefined ? {} : parseHeaders(baseHeaders, 'OTEL_EXPORTER_OTLP_HEADERS')),
      ...(tracesHeaders === undefined ? {} : parseHeaders(tracesHeaders, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS')),
    };
    set('headers', headers, tracesHeaders !== undefined ? 'OTEL_EXPORTER_OTLP_TRACES_HEADERS' : 'OTEL_EXPORTER_OTLP_HEADERS');
  }

  const sampler = value('OTEL_TRACES_SAMPLER')?.toLowerCase();
  const arg = value('OTEL_TRACES_SAMPLER_ARG');
  let ratio: number | null = null;
  if (sampler !== undefined) {
    const known = SAMPLERS.get(sampler);
    if (known === undefined) throw new ConfigError('tracing.sample_ratio', `OTEL_TRACES_SAMPLER: one of ${[...SAMPLERS.keys()].join(', ')}, got '${sampler}'`);
    set('parent_based', known[0], 'OTEL_TRACES_SAMPLER');
    ratio = known[1];
  }
  // The argument alone sets the ratio of the configured sampler; with always_* it is ignored (spec).
  if (ratio === null && arg !== undefined) set('sample_ratio', arg, 'OTEL_TRACES_SAMPLER_ARG');
  else if (ratio !== null) set('sample_ratio', ratio, 'OTEL_TRACES_SAMPLER');
  return out;
}

/** `service.name` of `key1=value1,key2=value2` (values percent-encoded), when it is there and not empty. */
function resourceServiceName(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== 'service.name') continue;
    let v: string;
    try {
      v = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new ConfigError('tracing.service_name', 'OTEL_RESOURCE_ATTRIBUTES: the value of service.name is not percent-encoded correctly');
    }
    return v === '' ? undefined : v;
  }
  return undefined;
}

/** `key1=value1,key2=value2`, values percent-encoded (the OTLP exporter spec's format). */
function parseHeaders(text: string, variable: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const name = eq === -1 ? '' : pair.slice(0, eq).trim();
    if (name === '') throw new ConfigError('tracing.headers', `${variable}: expected key=value pairs separated by commas`);
    let v: string;
    try {
      v = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new ConfigError('tracing.headers', `${variable}: the value of ${name} is not percent-encoded correctly`);
    }
    if (/[\r\n\0]/.test(v)) throw new ConfigError('tracing.headers', `${variable}: the value of ${name} holds a line break or NUL`);
    out[name.toLowerCase()] = v;
  }
  return out;
}
