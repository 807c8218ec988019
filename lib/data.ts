import { Buffer } from 'node:buffer';

import { createError } from './errors';

/** What shmchannel accepts as message data; strings travel as UTF-8. */
export type Data = Buffer | Uint8Array | string;

/** Data as a Buffer, without copying Buffers and Uint8Arrays. */
export function toBuffer(data: unknown, what: string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  const got = data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data;
  throw createError('ERR_INVALID_ARG_TYPE', `${what} must be a Buffer, Uint8Array or string, got ${got}`);
}
