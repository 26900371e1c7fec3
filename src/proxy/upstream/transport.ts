// How upstream connections move bytes, chosen once per thread when this module loads.
//
// - `stream_handle`: straight to the libuv stream under each net.Socket, through the
//   StreamBase calls Node's own net.js makes (`process.binding('stream_wrap')` and
//   `socket._handle`). Internal API: a Node upgrade may remove or change it.
// - `net_socket`: the public net.Socket API ('data' events, write, pause/resume, cork).
//   Slower (Node's Readable and Writable run for every read and write), the same behaviour.
//
// The internal path is feature-tested, not version-sniffed: the binding must offer what the
// fast path uses and the TCP handle's prototype the methods it calls; anything missing
// selects the public path. SLUICE_UPSTREAM_TRANSPORT=socket forces the public path (tests
// run it that way); `native` (or unset) takes the internal path when it is usable. Any
// other value stops the worker from starting.

import { SluiceError } from '../../errors/index.js';

export type UpstreamTransport = 'stream_handle' | 'net_socket';

export interface WriteReq {
  oncomplete: (status: number) => void;
}

/** What the `stream_handle` path needs from `process.binding('stream_wrap')`. */
export interface StreamWrap {
  /** Shared with the native side: written by every StreamBase call. */
  readonly state: Int32Array;
  /** Index in `state`: the last write left bytes in flight (1) or completed at once (0). */
  readonly lastWriteWasAsync: number;
  /** Index in `state`: a read's byte count, or an error/EOF (<= 0). */
  readonly readBytes: number;
  newReq(): WriteReq;
}

type Binding = Record<string, unknown>;

function binding(name: string): Binding | null {
  try {
    const b = (process as unknown as { binding?: (name: string) => Binding }).binding?.(name);
    return typeof b === 'object' && b !== null ? b : null;
  } catch {
    return null;
  }
}

/** The StreamBase methods the fast path calls on a socket's handle. */
const HANDLE_METHODS = ['writeLatin1String', 'writeBuffer', 'readStop', 'readStart', 'useUserBuffer'] as const;

function probeStreamWrap(): StreamWrap | null {
  const b = binding('stream_wrap');
  if (b === null) return null;
  const WriteWrap = b['WriteWrap'];
  const state = b['streamBaseState'];
  const index = b['kLastWriteWasAsync'];
  const readBytes = b['kReadBytesOrError'];
  if (typeof WriteWrap !== 'function' || !(state instanceof Int32Array) || typeof index !== 'number' || typeof readBytes !== 'number') return null;
  const tcp = binding('tcp_wrap')?.['TCP'] as { prototype?: Record<string, unknown> } | undefined;
  const proto = tcp?.prototype;
  if (proto === undefined || HANDLE_METHODS.some((m) => typeof proto[m] !== 'function')) return null;
  const Req = WriteWrap as new () => WriteReq;
  return { state, lastWriteWasAsync: index, readBytes, newReq: () => new Req() };
}

function chooseTransport(setting: string | undefined, usable: boolean): UpstreamTransport {
  if (setting === 'socket') return 'net_socket';
  if (setting === undefined || setting === '' || setting === 'native') return usable ? 'stream_handle' : 'net_socket';
  throw new SluiceError('SLUICE_ERR_CONFIG', `SLUICE_UPSTREAM_TRANSPORT must be "native" or "socket", not ${JSON.stringify(setting)}`);
}

const probed = probeStreamWrap();

/** The transport this thread's upstream connections use. */
export const upstreamTransport: UpstreamTransport = chooseTransport(process.env['SLUICE_UPSTREAM_TRANSPORT'], probed !== null);

/** The binding whatever the upstream transport chose (the node front end reads and writes through it too); null when this Node lacks it. */
export const streamBase: StreamWrap | null = probed;

/** The binding, when (and only when) the `stream_handle` path is chosen. */
export const streamWrap: StreamWrap | null = upstreamTransport === 'stream_handle' ? probed : null;
