import { getSystemErrorName } from 'node:util';

/** Every `code` a shmchannel error can carry. */
export type ErrorCode =
  | 'ERR_ALREADY_OPEN'
  | 'ERR_AMBIGUOUS_CLIENT'
  | 'ERR_CHANNEL_BUSY'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_INVALID_NAME'
  | 'ERR_INVALID_SIZE'
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_SHM_OPEN_FAILED'
  | 'ERR_SHM_CLOSE_FAILED'
  | 'ERR_RESOURCE_LIMIT'
  | 'ERR_INCOMPATIBLE_SEGMENT'
  | 'ERR_MESSAGE_TOO_LARGE'
  | 'ERR_QUEUE_FULL'
  | 'ERR_POOL_EXHAUSTED'
  | 'ERR_PEER_LOST'
  | 'ERR_TIMEOUT'
  | 'ERR_PROTOCOL'
  | 'ERR_REMOTE'
  | 'ERR_NO_HANDLER'
  | 'ERR_REQUEST_FINISHED'
  | 'ERR_CODEC';

export interface ErrorDetails {
  /** System error name, e.g. `'ENOENT'`, when a system call failed. */
  errno?: string;
  syscall?: string;
  /** Pid of the live process that holds the name (`ERR_ALREADY_OPEN`, `ERR_CHANNEL_BUSY`). */
  ownerPid?: number;
  /** `code` of the error thrown by the remote handler (`ERR_REMOTE`). */
  remoteCode?: string;
  cause?: unknown;
}

/** The one error class of shmchannel: an `Error` with a Node-style `code`. */
export class ShmChannelError extends Error {
  readonly code: ErrorCode;
  declare readonly errno?: string;
  declare readonly syscall?: string;
  declare readonly ownerPid?: number;
  declare readonly remoteCode?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ShmChannelError';
    this.code = code;
    if (details.errno !== undefined) this.errno = details.errno;
    if (details.syscall !== undefined) this.syscall = details.syscall;
    if (details.ownerPid !== undefined) this.ownerPid = details.ownerPid;
    if (details.remoteCode !== undefined) this.remoteCode = details.remoteCode;
  }
}

/** Creates every error shmchannel throws or emits. */
export function createError(code: ErrorCode, message: string, details?: ErrorDetails): ShmChannelError {
  return new ShmChannelError(code, message, details);
}

/** True if `err` is a shmchannel error (of `code`, when given). */
export function isShmChannelError(err: unknown, code?: ErrorCode): err is ShmChannelError {
  return err instanceof ShmChannelError && (code === undefined || err.code === code);
}

/** What the native binding throws: an Error with `code`, `reason` and maybe `errno` etc. */
interface NativeError extends Error {
  code?: string;
  reason?: string;
  errno?: number;
  syscall?: string;
  ownerPid?: number;
}

/** The binding's `reason`, for decisions such as "retry while the server is not there yet". */
export function nativeReason(err: unknown): string | undefined {
  return (err as NativeError | undefined)?.reason;
}

/** Re-creates an error thrown by the native binding as a ShmChannelError. */
export function fromNativeError(err: unknown): ShmChannelError {
  if (err instanceof ShmChannelError) return err;
  const e = err as NativeError;
  if (!(e instanceof Error)) return createError('ERR_PROTOCOL', String(err));
  if (e instanceof TypeError) return createError('ERR_INVALID_ARG_TYPE', e.message);
  if (e instanceof RangeError) return createError('ERR_INVALID_ARG_VALUE', e.message);
  const code = (e.code ?? 'ERR_SHM_OPEN_FAILED') as ErrorCode;
  return createError(code, e.message, {
    errno: typeof e.errno === 'number' ? getSystemErrorName(-e.errno) : undefined,
    syscall: e.syscall,
    ownerPid: e.ownerPid,
  });
}
