// The names of segments: POSIX shared-memory object names, checked by the native core's rule.
import { Buffer } from 'node:buffer';

import { createError, fromNativeError } from './errors';
import { binding } from './load-addon';

/** Throws ERR_INVALID_NAME unless name is a POSIX shm name: "/x", no other '/', ≤ 255 bytes. */
export function validateName(name: unknown): asserts name is string {
  if (typeof name !== 'string') {
    throw createError('ERR_INVALID_NAME', `name must be a string like '/my-channel', got ${typeof name}`);
  }
  if (name.includes('\0')) throw createError('ERR_INVALID_NAME', 'name must not contain NUL characters');
  try {
    binding.validateName(name);
  } catch (err) {
    const e = fromNativeError(err);
    throw createError(
      'ERR_INVALID_NAME',
      `invalid name ${JSON.stringify(name)}: ${e.message.replace(/^invalid name [^:]*: /, '')}`,
    );
  }
}

/** The longest name of a server of many clients: its connections are named `<name>~<slot>` (up to "~255"). */
export const MAX_SERVER_NAME_BYTES = 251;

/** Throws ERR_INVALID_NAME for a (valid) name too long for a server of many clients. */
export function validateServerName(name: string): void {
  const bytes = Buffer.byteLength(name);
  if (bytes <= MAX_SERVER_NAME_BYTES) return;
  throw createError(
    'ERR_INVALID_NAME',
    `invalid name for a server of many clients: ${bytes} bytes, at most ${MAX_SERVER_NAME_BYTES} ` +
      `(its connections are named <name>~<slot>); a server with maxClients: 1 takes up to 255`,
  );
}
