// What a Channel can be told, its defaults, and the checks the constructor runs on it.
import { createError } from './errors';
import { MAX_CLIENTS } from './native';
import { MAX_MESSAGE_SIZE, MAX_POOL_CAPACITY, MAX_RING_CAPACITY, MIN_RING_CAPACITY, POOL_BLOCK_SIZE } from './protocol';

export interface ChannelOptions {
  /** Server: bytes per direction, a power of two from 4 KiB to 1 GiB. Default 1 MiB. */
  ringCapacity?: number;
  /**
   * Server: the largest message either side may send, 1 B to 1 GiB. Default 64 MiB. Client:
   * the largest it accepts; open() fails with ERR_INCOMPATIBLE_SEGMENT if the server allows
   * more. Default: the server's, whatever it is.
   */
  maxMessageSize?: number;
  /**
   * Server: bytes of shared memory per direction for zero-copy loans (loan(), API.md
   * "Zero-copy"): 0, or a multiple of 4096 up to 1 GiB, allocated when the server opens. The
   * largest loan is the smaller of this and maxMessageSize. Default 0: no pool, no cost.
   */
  poolSize?: number;
  /**
   * Messages the peer sent from a loan arrive as views into its pool, valid until given back
   * with release() (or `using`), instead of as copies. Only for a peer you trust not to write
   * into a message after sending it (API.md "Zero-copy"). Default false.
   */
  borrow?: boolean;
  /**
   * Server: how many clients may be connected at once, 1 to 256. Each gets rings (and a loan
   * pool) of its own, made when it connects, and one that stops reading, floods, breaks the
   * protocol or dies affects no other (API.md "Many clients"). 1: the server takes one client
   * at a time on one segment, and a second one gets ERR_CHANNEL_BUSY. Default 16.
   */
  maxClients?: number;
  /** Server: file mode of the segment. Default 0o600 (only this user). */
  permissions?: number;
  /** Client: how long open() waits for the server to appear, in ms. Default 5000. */
  connectTimeout?: number;
  /** Bound of the outgoing queue used while the ring is full. Default max(64 MiB, maxMessageSize + ringCapacity). */
  maxQueuedBytes?: number;
  /** Default timeout of every request(), in ms. Default: none. */
  requestTimeout?: number;
  /**
   * How long close() (and process exit) waits for queued outgoing messages to reach the ring
   * while the peer reads, in ms. Default 2000. What still cannot be sent then is reported with
   * a process warning (code SHMCHANNEL_UNSENT), never dropped silently.
   */
  closeTimeout?: number;
  /**
   * After traffic, keep reading the ring from the event loop for this many microseconds
   * before sleeping on the futex doorbell. Replies and bursts arriving within the window cost
   * no system call and no thread wake-up, which is what makes round trips fast; the price is
   * CPU while the window is open. The first 20 µs after each message are a tight loop that
   * holds the event loop (timers and I/O wait that long at most). 0 sleeps at once (lowest
   * CPU). Default 200.
   */
  pollWindowUs?: number;
}

export interface RequestOptions {
  /** Fail with ERR_TIMEOUT (and cancel remotely) if the response has not ended by then, in ms. */
  timeout?: number;
}

export const DEFAULT_RING_CAPACITY = 1 << 20;
export const DEFAULT_MAX_MESSAGE_SIZE = 64 << 20;
export const DEFAULT_CONNECT_TIMEOUT = 5000;
export const DEFAULT_POLL_WINDOW_US = 200;
export const DEFAULT_CLOSE_TIMEOUT = 2000;
export const DEFAULT_PERMISSIONS = 0o600;
export { DEFAULT_MAX_CLIENTS } from './native';
const MIN_QUEUE_BOUND = 64 << 20;

/** The bound of the outgoing queue: never less than a whole message, which may be partly sent. */
export function queueBound(o: Readonly<ChannelOptions>, maxMessageSize: number, ringCapacity: number): number {
  const bound = o.maxQueuedBytes ?? Math.max(MIN_QUEUE_BOUND, maxMessageSize + ringCapacity);
  return Math.max(bound, maxMessageSize);
}

/** Throws the ShmChannelError that names a bad mode, or the first bad option. */
export function checkModeAndOptions(mode: unknown, options: unknown): asserts options is ChannelOptions {
  if (mode !== 'server' && mode !== 'client') {
    throw createError('ERR_INVALID_ARG_VALUE', `mode must be 'server' or 'client', got ${String(mode)}`);
  }
  if (options === null || typeof options !== 'object') {
    throw createError('ERR_INVALID_ARG_TYPE', 'options must be an object');
  }
  checkOptions(options as ChannelOptions);
}

/** Throws the ShmChannelError that names the first bad option. */
export function checkOptions(o: ChannelOptions): void {
  const wholeNumber = (
    key: keyof ChannelOptions,
    min: number,
    max: number,
    code: 'ERR_INVALID_SIZE' | 'ERR_INVALID_ARG_VALUE',
  ) => {
    const v = o[key];
    if (v === undefined) return;
    if (typeof v !== 'number')
      throw createError('ERR_INVALID_ARG_TYPE', `options.${key} must be a number, got ${typeof v}`);
    if (!Number.isInteger(v) || v < min || v > max) {
      throw createError(code, `options.${key} must be a whole number from ${min} to ${max}, got ${v}`);
    }
  };
  wholeNumber('ringCapacity', MIN_RING_CAPACITY, MAX_RING_CAPACITY, 'ERR_INVALID_SIZE');
  if (o.ringCapacity !== undefined && (o.ringCapacity & (o.ringCapacity - 1)) !== 0) {
    throw createError('ERR_INVALID_SIZE', `options.ringCapacity must be a power of two, got ${o.ringCapacity}`);
  }
  wholeNumber('maxMessageSize', 1, MAX_MESSAGE_SIZE, 'ERR_INVALID_SIZE');
  wholeNumber('poolSize', 0, MAX_POOL_CAPACITY, 'ERR_INVALID_SIZE');
  if (o.poolSize !== undefined && o.poolSize % POOL_BLOCK_SIZE !== 0) {
    throw createError(
      'ERR_INVALID_SIZE',
      `options.poolSize must be a multiple of ${POOL_BLOCK_SIZE}, got ${o.poolSize}`,
    );
  }
  if (o.borrow !== undefined && typeof o.borrow !== 'boolean') {
    throw createError('ERR_INVALID_ARG_TYPE', `options.borrow must be a boolean, got ${typeof o.borrow}`);
  }
  wholeNumber('maxQueuedBytes', 0, Number.MAX_SAFE_INTEGER, 'ERR_INVALID_SIZE');
  wholeNumber('maxClients', 1, MAX_CLIENTS, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('permissions', 0, 0o777, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('connectTimeout', 0, 2 ** 31 - 1, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('requestTimeout', 1, 2 ** 31 - 1, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('pollWindowUs', 0, 1_000_000, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('closeTimeout', 0, 2 ** 31 - 1, 'ERR_INVALID_ARG_VALUE');
}

/** Checks a request's timeout (its own or the channel's requestTimeout): ms, or undefined. */
export function checkRequestTimeout(timeout: unknown): number | undefined {
  if (timeout === undefined) return undefined;
  if (typeof timeout !== 'number') {
    throw createError('ERR_INVALID_ARG_TYPE', `timeout must be a number of ms, got ${typeof timeout}`);
  }
  if (!(Number.isFinite(timeout) && timeout > 0)) {
    throw createError('ERR_INVALID_ARG_VALUE', `timeout must be a positive number of ms, got ${String(timeout)}`);
  }
  return timeout;
}
