// Frame kinds and message-level encoding of docs/PROTOCOL.md; no I/O here.
// The numbers here that the native core defines too are checked against it at load (native-constants.ts).
import { Buffer } from 'node:buffer';

import { createError, ShmChannelError } from './errors';

/** The version of docs/PROTOCOL.md this code speaks: the `version` field of the segment header. */
export const PROTOCOL_VERSION = 3;

/** A ring's capacity is a power of two in this range (docs/PROTOCOL.md §1). */
export const MIN_RING_CAPACITY = 4096;
export const MAX_RING_CAPACITY = 2 ** 30;
/** The largest maxMessageSize a segment may state (docs/PROTOCOL.md §1). */
export const MAX_MESSAGE_SIZE = 2 ** 30;
/** Loan pools are lent in blocks of this many bytes, and hold at most MAX_POOL_CAPACITY (docs/PROTOCOL.md §6). */
export const POOL_BLOCK_SIZE = 4096;
export const MAX_POOL_CAPACITY = 2 ** 30;

/** Frame flags (docs/PROTOCOL.md §2): LOANED, the payload is a 16-byte descriptor of a loan. */
export const FrameFlag = { LOANED: 1 } as const;

export const FrameKind = {
  HELLO: 1,
  BYE: 2,
  NOTIFY: 3,
  REQUEST: 4,
  RESPONSE: 5,
  COMPLETE: 6,
  ERROR: 7,
  CANCEL: 8,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/**
 * The frame header of docs/PROTOCOL.md §2, 16 bytes in host byte order: u32 length (of this
 * frame's payload), u8 kind, u8 flags (FrameFlag), u16 reserved (0), u32 request id, u32 total (length
 * of the whole message). Frames start 8-byte aligned, so the u32 fields are words 0, 2 and 3.
 * This file is the one place in TypeScript that knows the layout.
 */
export const FRAME_HEADER_SIZE = 16;

/** A frame header as read: one object reused for every frame of a loop. */
export interface FrameHeader {
  length: number;
  kind: number;
  flags: number;
  id: number;
  total: number;
}

/** Reads the header of the frame at byte `at` of `frames` (`words` = headerWords(frames)) into `into`. */
export function readFrameHeader(frames: Buffer, words: Uint32Array, at: number, into: FrameHeader): void {
  const word = at >>> 2;
  into.length = words[word];
  into.kind = frames[at + 4];
  into.flags = frames[at + 5];
  into.id = words[word + 2];
  into.total = words[word + 3];
}

/** Writes the header of a frame at byte `at` of `frames`, flags and reserved bytes zero. */
export function writeFrameHeader(
  frames: Buffer,
  words: Uint32Array,
  at: number,
  kind: number,
  id: number,
  length: number,
  total: number,
): void {
  const word = at >>> 2;
  words[word] = length;
  words[word + 1] = 0;
  frames[at + 4] = kind;
  words[word + 2] = id;
  words[word + 3] = total;
}

/** The payload length of the frame at byte `at` (the first word of its header). */
export function frameLengthAt(words: Uint32Array, at: number): number {
  return words[at >>> 2];
}

type BufferClass = new (arrayBuffer: ArrayBufferLike, byteOffset: number, length: number) => Buffer;
// The class Node constructs Buffers with (what buf.subarray() creates through the species),
// if it is what we expect: a constructor whose instances are exactly Buffers.
const NodeBuffer = ((): BufferClass | undefined => {
  try {
    const species = (Buffer as unknown as { [Symbol.species]?: unknown })[Symbol.species];
    if (typeof species !== 'function' || species === Buffer || species.prototype !== Buffer.prototype) return undefined;
    const probe = new (species as BufferClass)(new ArrayBuffer(8), 0, 8);
    return Buffer.isBuffer(probe) && probe.length === 8 ? (species as BufferClass) : undefined;
  } catch {
    return undefined;
  }
})();

/**
 * A Buffer over `length` bytes of `memory` from `offset`, without a copy, as buf.subarray()
 * makes it but at a fraction of the cost: no species lookup, and no `buf.buffer` (a call into
 * the runtime) per view, which shows when every received small message is such a view.
 */
export function viewOf(memory: ArrayBuffer, offset: number, length: number): Buffer {
  if (NodeBuffer === undefined) return Buffer.from(memory, offset, length);
  return new NodeBuffer(memory, offset, length);
}

/**
 * The 32-bit words of a buffer of frames, for the length, id and total of frame headers (the
 * kind is a byte). Frames start at multiples of 8, and the words are in host byte order, as the
 * native core lays headers out; plain loads and stores, unlike readUInt32LE, cost next to
 * nothing in the per-message loops.
 */
export function headerWords(frames: Buffer): Uint32Array {
  if (frames.byteOffset % 8 !== 0) throw new Error('a frame buffer must start 8-byte aligned');
  return new Uint32Array(frames.buffer, frames.byteOffset, frames.length >>> 2);
}
export const EMPTY = Buffer.alloc(0);

/** Total bytes a frame with `length` payload bytes occupies in the ring and in a read batch. */
export function frameSize(length: number): number {
  return FRAME_HEADER_SIZE + ((length + 7) & ~7);
}

/** The payload of an ERROR frame. */
export interface RemoteErrorPayload {
  message: string;
  code?: string;
  name?: string;
}

/**
 * Longest `code` an ERROR payload carries, in UTF-8 bytes: a code names a kind of failure, and
 * it must fit beside the message in the smallest maxMessageSize a peer may choose.
 */
export const MAX_REMOTE_CODE_BYTES = 128;

export function encodeRemoteError(err: unknown): Buffer {
  const code: unknown = (err as { code?: unknown } | null | undefined)?.code;
  const payload: RemoteErrorPayload =
    err instanceof Error
      ? {
          code: typeof code === 'string' ? cutUtf8(code, MAX_REMOTE_CODE_BYTES) : undefined,
          name: err.name,
          message: err.message,
        }
      : { message: typeof err === 'string' ? err : String(err) };
  return Buffer.from(JSON.stringify(payload), 'utf8');
}

/**
 * An ERROR payload that fits in `max` bytes. The code goes first: a cut message keeps as much
 * of its start as fits and ends with "… (truncated, N bytes)", N its whole length; then the
 * name goes, then the message. At worst the payload is empty, which the requester still sees as
 * ERR_REMOTE.
 */
export function fitRemoteError(payload: Buffer, max: number): Buffer {
  if (payload.length <= max) return payload;
  let parsed: RemoteErrorPayload;
  try {
    parsed = JSON.parse(payload.toString('utf8')) as RemoteErrorPayload;
  } catch {
    return EMPTY;
  }
  const code = typeof parsed.code === 'string' ? parsed.code : undefined;
  const name = typeof parsed.name === 'string' ? parsed.name : undefined;
  const message = String(parsed.message ?? '');
  const marker = `\u2026 (truncated, ${Buffer.byteLength(message, 'utf8')} bytes)`;
  const encode = (kept: number, withName: boolean): Buffer =>
    Buffer.from(
      JSON.stringify({
        code,
        name: withName ? name : undefined,
        message: kept < message.length ? message.slice(0, kept) + marker : message,
      }),
      'utf8',
    );
  for (const withName of [true, false]) {
    if (encode(0, withName).length > max) continue;
    // The longest start of the message that fits: a binary search over its length.
    let fits = 0;
    let tooLong = message.length + 1;
    while (tooLong - fits > 1) {
      const mid = (fits + tooLong) >>> 1;
      if (encode(mid, withName).length <= max) fits = mid;
      else tooLong = mid;
    }
    // Not between the two halves of a surrogate pair.
    if (fits > 0 && /[\uD800-\uDBFF]/.test(message[fits - 1])) fits -= 1;
    return encode(fits, withName);
  }
  const codeOnly = Buffer.from(JSON.stringify({ code, message: '' }), 'utf8');
  return codeOnly.length <= max ? codeOnly : EMPTY;
}

/** The longest start of `text` that is at most `max` bytes of UTF-8, whole characters only. */
function cutUtf8(text: string, max: number): string {
  if (Buffer.byteLength(text, 'utf8') <= max) return text;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    bytes += Buffer.byteLength(ch, 'utf8');
    if (bytes > max) break;
    end += ch.length;
  }
  return text.slice(0, end);
}

/** The error a requester sees for an ERROR frame; garbage from the peer still yields an error. */
export function decodeRemoteError(payload: Buffer): ShmChannelError {
  let parsed: Partial<RemoteErrorPayload> = {};
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    if (value !== null && typeof value === 'object') parsed = value as Partial<RemoteErrorPayload>;
  } catch {
    // Not JSON: keep the raw text as the message below.
  }
  const message = typeof parsed.message === 'string' ? parsed.message : payload.toString('utf8');
  const code = typeof parsed.code === 'string' ? parsed.code : undefined;
  if (code === 'ERR_NO_HANDLER') return createError('ERR_NO_HANDLER', message);
  return createError('ERR_REMOTE', message, { remoteCode: code });
}

/**
 * Joins fragments into messages. The native reader already checked that fragments of one
 * message are consecutive and consistent; this re-checks what it relies on.
 */
export class MessageAssembler {
  private partial: Buffer | undefined;
  private filled = 0;
  /** Kind and id of the message last started: valid for a completed message until the next push. */
  kind = 0;
  id = 0;

  /** `allocate`: an uninitialized Buffer of the given length, for each message it completes. */
  constructor(private readonly allocate: (length: number) => Buffer) {}

  /** The whole message once `chunk` completes it, else undefined. */
  push(kind: number, id: number, total: number, chunk: Buffer): Buffer | undefined {
    if (this.partial === undefined) {
      if (chunk.length > total) throw protocolError('fragment longer than its message');
      this.partial = this.allocate(total);
      this.filled = 0;
      this.kind = kind;
      this.id = id;
    } else if (kind !== this.kind || id !== this.id || total !== this.partial.length) {
      throw protocolError('fragment does not continue the message in progress');
    }
    if (this.filled + chunk.length > total) throw protocolError('fragment overruns its message');
    // Received data must outlive the read batch it arrived in, which is reused: copy it.
    chunk.copy(this.partial, this.filled);
    return this.filledIn(chunk.length);
  }

  /** The part of the message in progress still to be received, to be written in place; then call filledIn. */
  missing(): Buffer | undefined {
    return this.partial?.subarray(this.filled);
  }

  /** `n` more bytes of the message in progress are in place: the whole message once complete. */
  filledIn(n: number): Buffer | undefined {
    const partial = this.partial;
    if (partial === undefined || this.filled + n > partial.length) throw protocolError('fragment overruns its message');
    this.filled += n;
    if (this.filled < partial.length) return undefined;
    this.partial = undefined;
    return partial;
  }

  reset(): void {
    this.partial = undefined;
    this.filled = 0;
  }
}

export function protocolError(what: string): ShmChannelError {
  return createError('ERR_PROTOCOL', `protocol violation by the peer: ${what}`);
}
