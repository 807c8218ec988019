import { Buffer } from 'node:buffer';
import { types } from 'node:util';

import { createError } from './errors';

/**
 * What shmchannel accepts as message data: bytes in any of JavaScript's containers, or a
 * string (sent as UTF-8). An `ArrayBufferView` (a `Buffer`, any typed array, a `DataView`)
 * stands for the bytes it views, not its whole buffer.
 */
export type Data = string | ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

/** Data as a Buffer over the same memory: views and ArrayBuffers are not copied. */
export function toBuffer(data: unknown, what: string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  // isAnyArrayBuffer, not instanceof: an ArrayBuffer from another realm (vm, a worker's
  // message) is one too.
  if (types.isAnyArrayBuffer(data)) return Buffer.from(data);
  throw createError(
    'ERR_INVALID_ARG_TYPE',
    `${what} must be a string, a Buffer, an ArrayBuffer or an ArrayBufferView (a typed array or a DataView), got ${describeType(data)}`,
  );
}

/** What a value is, for an error message: `null`, `type number (42)`, `an instance of Map`. */
export function describeType(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object with no prototype';
  }
  let shown = typeof value === 'symbol' ? value.toString() : String(value);
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  if (typeof value === 'string') shown = `'${shown}'`;
  return `type ${typeof value} (${shown})`;
}

/** The messages of notifyMany() as Buffers; ERR_INVALID_ARG_TYPE for what is not an iterable of Data. */
export function toBuffers(messages: unknown): Buffer[] {
  if (
    typeof messages === 'string' ||
    typeof (messages as Partial<Iterable<unknown>> | null)?.[Symbol.iterator] !== 'function'
  ) {
    throw createError('ERR_INVALID_ARG_TYPE', 'notifyMany() takes an iterable (an array, say) of messages');
  }
  const payloads: Buffer[] = [];
  for (const m of messages as Iterable<unknown>) payloads.push(toBuffer(m, 'notification data'));
  return payloads;
}
