// The names of segments: POSIX shared-memory object names, checked by the native core's rule.
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
