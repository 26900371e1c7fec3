// The `stream_handle` transport: reads and writes go straight to the libuv stream under the
// net.Socket, skipping Node's Readable and Writable. Chosen only when transport.ts found the
// internal API it uses.

import { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { BaseConnection, coalescedTaken, type PoolLike } from './base-connection.js';
import { streamWrap, type StreamWrap, type WriteReq } from './transport.js';

// One read buffer for every upstream socket of this thread (Node's `onread`): a read is
// parsed and handed to the client synchronously, so nothing outlives the callback except
// what the exchange copies (backpressured chunks, cache recordings). This skips the
// Readable stream machinery and the allocation of a buffer per read.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** The libuv stream under a net.Socket, as Node's own stream_base_commons drives it. */
interface StreamHandle {
  writeLatin1String(req: object, data: string): number;
  writeBuffer(req: object, data: Uint8Array): number;
  /** Called by the native stream for every read; `streamBaseState` holds the byte count. */
  onread: (arrayBuffer: ArrayBuffer) => unknown;
  reading: boolean;
  readStop(): number;
}

// Set when transport.ts chose this path; the class is not constructed otherwise.
const wrap = streamWrap as StreamWrap;

function handleOf(socket: Socket): StreamHandle | null {
  return (socket as unknown as { _handle: StreamHandle | null })._handle;
}

/**
 * Node's Writable costs about 0.7 µs of JS per write (writeOrBuffer, a WriteWrap, a
 * nextTick for the callback), which is a visible share of a small request. A socket with
 * nothing queued hands the bytes to its handle directly, through the same StreamBase call
 * net.Socket makes; reads take the same shortcut (see #takeReads).
 */
export class StreamHandleConnection extends BaseConnection {
  /**
   * The request object for direct writes: reused while writes complete synchronously (the
   * usual case), replaced when one is left in flight, whose completion reports the drain.
   */
  #writeReq: WriteReq | null = null;

  constructor(pool: PoolLike) {
    if (streamWrap === null) throw new Error('the stream_handle transport was not chosen (see transport.ts)');
    super(pool);
    this.#takeReads(this.socket);
  }

  protected override open(pool: PoolLike): Socket {
    return connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      // Public API: the reads #takeReads does not take (its handle check failed) come here.
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer) },
    });
  }

  /**
   * Data reads go straight from the handle to onRead. Node's onStreamRead, which would
   * run them, costs about 0.2 µs of property lookups on the socket per read (its timer,
   * destroyed, the onread option) for nothing this connection uses; it still runs the
   * rest: end of stream and read errors.
   */
  #takeReads(socket: Socket): void {
    const handle = handleOf(socket);
    if (handle === null || typeof handle.onread !== 'function' || typeof handle.reading !== 'boolean') return;
    const state = wrap.state;
    const readBytes = wrap.readBytes;
    const nodeOnRead = handle.onread;
    handle.onread = (arrayBuffer: ArrayBuffer): unknown => {
      const n = state[readBytes]!;
      if (n <= 0) return nodeOnRead.call(handle, arrayBuffer);
      if (this.closed) return undefined;
      // onRead may have closed the connection (a protocol error, the response cut short).
      if (!this.onRead(n, READ_BUFFER) && !this.closed) {
        // What Node does when a stream's onread callback returns false.
        handle.reading = false;
        handle.readStop();
      }
      return undefined;
    };
  }

  /** `data` straight to the handle when nothing is queued, else through the Writable. */
  protected override writeAtOnce(data: string | Buffer, shared: boolean): boolean {
    const socket = this.socket;
    const handle = handleOf(socket);
    if (handle === null || socket.connecting || socket.writableLength !== 0 || this.closed) {
      return this.writeThroughSocket(data, shared);
    }
    const req = (this.#writeReq ??= this.#newWriteReq());
    const err = typeof data === 'string' ? handle.writeLatin1String(req, data) : handle.writeBuffer(req, data);
    if (err !== 0) {
      // EPIPE, ECONNRESET...: the Writable path meets the same error and reports it the usual way.
      return this.writeThroughSocket(data, shared);
    }
    if (wrap.state[wrap.lastWriteWasAsync] === 0) return true;
    // libuv writes the rest later, and later writes queue behind it. A string's rest is in
    // Node's own copy; a buffer's is written from its memory, which the request keeps
    // alive (as Node's stream_base_commons does).
    if (typeof data !== 'string') {
      (this.#writeReq as WriteReq & { buffer: Buffer }).buffer = data;
      if (shared) coalescedTaken();
    }
    this.#writeReq = null;
    return false;
  }

  #newWriteReq(): WriteReq {
    const req = wrap.newReq();
    req.oncomplete = (status: number) => {
      if (status < 0) this.fail('SLUICE_ERR_UPSTREAM_RESET', `write failed (${status})`);
      else this.drained();
    };
    return req;
  }
}
