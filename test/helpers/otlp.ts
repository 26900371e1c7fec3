// A real OTLP/HTTP trace receiver for the tests (test/fixtures/otlp_receiver.py: the
// official protobuf bindings decode each export), and readers for the spans it writes.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnProc, waitForLine, type Proc } from './procs.js';

const REPO = join(import.meta.dirname, '..', '..');
const PYTHON = join(REPO, '.venv-tools', 'bin', 'python');
const RECEIVER = join(REPO, 'test', 'fixtures', 'otlp_receiver.py');

export interface AnyValue {
  stringValue?: string;
  intValue?: string;
  boolValue?: boolean;
  arrayValue?: { values?: AnyValue[] };
}
export interface KeyValue {
  key: string;
  value: AnyValue;
}
export interface ReceivedSpan {
  name: string;
  kind: string;
  traceIdHex: string;
  spanIdHex: string;
  parentSpanIdHex: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  traceState?: string;
  attributes?: KeyValue[];
  events?: Array<{ name: string; attributes?: KeyValue[] }>;
  status?: { code?: string };
  resource: Record<string, AnyValue>;
  exportHeaders: Record<string, string>;
}

/** An attribute's value as a plain one (int64s as numbers). */
export function plain(v: AnyValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(plain);
  return undefined;
}

/** A span's (or event's) attributes as plain values. */
export function attrs(kvs: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, plain(kv.value)]));
}

export interface Receiver {
  readonly proc: Proc;
  readonly file: string;
  spans(): ReceivedSpan[];
}

export async function startReceiver(port: number): Promise<Receiver> {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-otlp-')), 'spans.jsonl');
  const proc = spawnProc(PYTHON, [RECEIVER, file, String(port)], { env: { PATH: process.env.PATH ?? '' } });
  await waitForLine(proc, (l) => l.startsWith('listening'));
  return {
    proc,
    file,
    spans: () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ReceivedSpan) : []),
  };
}

/** A client's own span, as a W3C traceparent (sampled). */
export function clientParent(): { traceId: string; spanId: string; header: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, header: `00-${traceId}-${spanId}-01` };
}
