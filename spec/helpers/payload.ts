import { createHash } from 'node:crypto';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/**
 * `size` pseudo-random bytes determined by `seed` (xorshift32), the same in every process.
 * Not periodic, so a fragment delivered twice, dropped or out of place changes the hash.
 */
export function patternBuffer(size: number, seed: number): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = Math.imul(seed + 1, 0x9e3779b1) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, size);
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** What a process reports about a message it received: enough to compare, small enough for IPC. */
export interface Summary {
  length: number;
  sha256: string;
  isBuffer: boolean;
  /** The UTF-8 text, for messages up to 1 KiB. */
  text?: string;
}

export function summarize(data: Buffer): Summary {
  return {
    length: data.length,
    sha256: sha256(data),
    isBuffer: Buffer.isBuffer(data),
    text: data.length <= KiB ? data.toString('utf8') : undefined,
  };
}

/**
 * Notification `seq` of a flood: [seq u32][fnv1a32 of body u32][body], the body a byte
 * pattern that depends on seq, so a reordered, lost, duplicated or corrupted message shows.
 */
export function floodMessage(target: Buffer, seq: number): void {
  const body = target.subarray(8);
  body.fill(seq & 0xff);
  body[0] = (seq >>> 8) & 0xff;
  target.writeUInt32LE(seq >>> 0, 0);
  target.writeUInt32LE(fnv1a32(body), 4);
}

/** The sequence number of a flood message, or -1 if its checksum does not match. */
export function checkFloodMessage(message: Buffer): number {
  if (message.length < 8) return -1;
  return fnv1a32(message.subarray(8)) === message.readUInt32LE(4) ? message.readUInt32LE(0) : -1;
}

function fnv1a32(bytes: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}
