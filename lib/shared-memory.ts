import { Buffer } from 'node:buffer';

import { createError, fromNativeError } from './errors';
import { binding } from './load-addon';
import type { NativeSharedMemory } from './native';
import { validateName } from './names';

export interface SharedMemoryOptions {
  /** File mode of a created segment. Default 0o600 (only this user). */
  permissions?: number;
}

/**
 * A named POSIX shared-memory segment and a zero-copy Buffer over it: the 2017 library's
 * shared-memory wrapper. After close() the buffer is detached (length 0), so a view kept by
 * mistake reads as empty instead of crashing the process. If another process shrinks the
 * segment, the pages it cut off read as zeros here instead of killing the process with
 * `SIGBUS`, and `truncated` says so.
 *
 * ## Example
 * ```ts
 * const mem = SharedMemory.create('/frame', 4096);
 * mem.buffer.write('hello');
 * const same = SharedMemory.open('/frame');   // e.g. in another process
 * same.buffer.toString('utf8', 0, 5);         // 'hello'
 * same.close(); mem.close(); mem.unlink();
 * ```
 */
export class SharedMemory {
  private native: NativeSharedMemory | undefined;
  private view: Buffer | undefined;

  private constructor(
    readonly name: string,
    native: NativeSharedMemory,
  ) {
    this.native = native;
    this.size = native.size();
  }

  /** Size in bytes. */
  readonly size: number;

  /** Creates a new segment of `size` bytes, zero-filled. ERR_ALREADY_OPEN if the name exists. */
  static create(name: string, size: number, options: SharedMemoryOptions = {}): SharedMemory {
    validateName(name);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1) {
      throw createError('ERR_INVALID_SIZE', `size must be a whole number of bytes ≥ 1, got ${String(size)}`);
    }
    const mode = options.permissions ?? 0o600;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      throw createError(
        'ERR_INVALID_ARG_VALUE',
        `permissions must be a file mode from 0 to 0o777, got ${String(mode)}`,
      );
    }
    return new SharedMemory(name, construct(name, size, true, mode));
  }

  /** Opens an existing segment, whatever its size. */
  static open(name: string): SharedMemory {
    validateName(name);
    return new SharedMemory(name, construct(name, 0, false, 0));
  }

  /** Removes a segment by name; mappings that exist stay valid until closed. */
  static unlink(name: string): void {
    validateName(name);
    try {
      binding.unlink(name);
    } catch (err) {
      const e = fromNativeError(err);
      throw createError('ERR_SHM_CLOSE_FAILED', e.message, { errno: e.errno, syscall: e.syscall });
    }
  }

  get isOpen(): boolean {
    return this.native !== undefined;
  }

  /** Zero-copy view of the whole segment. */
  get buffer(): Buffer {
    if (this.native === undefined) throw createError('ERR_CHANNEL_CLOSED', `shared memory ${this.name} is closed`);
    this.view ??= Buffer.from(this.native.buffer());
    return this.view;
  }

  /**
   * True once this process touched a page that the segment lost: another process shrank it
   * (`ftruncate`), or a full `/dev/shm` could not provide the page. From that page to the end, `buffer` is private zero-filled memory:
   * what the other process wrote there is gone, and what this one writes there no one sees.
   * False after close().
   */
  get truncated(): boolean {
    return this.native?.truncated() ?? false;
  }

  /** Unmaps the segment and detaches `buffer`. Idempotent. The segment itself stays until unlink(). */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  /** Removes the segment's name (see SharedMemory.unlink). */
  unlink(): void {
    SharedMemory.unlink(this.name);
  }
}

function construct(name: string, size: number, create: boolean, mode: number): NativeSharedMemory {
  try {
    return new binding.SharedMemory(name, size, create, mode);
  } catch (err) {
    throw fromNativeError(err);
  }
}
