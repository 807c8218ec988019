// Byte offsets of docs/PROTOCOL.md §1 (protocol version 2), for tests that play a hostile peer.
import * as fs from 'node:fs';

export const Layout = {
  magic: 0,
  version: 8,
  ringCapacity: 24,
  maxMessageSize: 28,
  serverPid: 32,
  clientPid: 36,
  state: 56,
  serverDoorbell: 64,
  clientDoorbell: 128,
  poolCapacity: 200,
  s2c: 256,
  c2s: 384,
  // Within a ring control block: the producer's words, then (+64) the consumer's.
  head: 0,
  releaseTail: 4,
  tail: 64,
  writerWaiting: 68,
  releaseHead: 72,
  poolWaiting: 76,
  data: 512,
} as const;

export const POOL_BLOCK = 4096;
export const RELEASE_ENTRY = 8;

/** Offset of a ring's data area: s2c first, then c2s. */
export function ringData(ring: 's2c' | 'c2s', capacity: number): number {
  return Layout.data + (ring === 's2c' ? 0 : capacity);
}

/** Offset of the loan pool of a direction (owned by its producer), after both rings' data. */
export function poolData(ring: 's2c' | 'c2s', capacity: number, poolCapacity: number): number {
  return Layout.data + 2 * capacity + (ring === 's2c' ? 0 : poolCapacity);
}

/** Entries of each release ring: the next power of two of the pool's blocks (0 without a pool). */
export function releaseSlots(poolCapacity: number): number {
  if (poolCapacity === 0) return 0;
  let slots = 1;
  while (slots < poolCapacity / POOL_BLOCK) slots *= 2;
  return slots;
}

/** Offset of a direction's release ring (written by its consumer), after both pools. */
export function releaseRing(ring: 's2c' | 'c2s', capacity: number, poolCapacity: number): number {
  const first = Layout.data + 2 * capacity + 2 * poolCapacity;
  return first + (ring === 's2c' ? 0 : releaseSlots(poolCapacity) * RELEASE_ENTRY);
}

/** Bytes of a version-2 segment. */
export function segmentSize(capacity: number, poolCapacity: number): number {
  return Layout.data + 2 * capacity + 2 * poolCapacity + 2 * releaseSlots(poolCapacity) * RELEASE_ENTRY;
}

/** Writes `bytes` at stream position `pos` of a ring's data, wrapping like the core. */
export function writeRingBytes(seg: Buffer, ring: 's2c' | 'c2s', capacity: number, pos: number, bytes: Buffer): void {
  const base = ringData(ring, capacity);
  for (let i = 0; i < bytes.length; i++) seg[base + ((pos + i) % capacity)] = bytes[i];
}

/** Reads `length` bytes at stream position `pos` of a ring's data. */
export function readRingBytes(seg: Buffer, ring: 's2c' | 'c2s', capacity: number, pos: number, length: number): Buffer {
  const base = ringData(ring, capacity);
  return Buffer.from(Array.from({ length }, (_, i) => seg[base + ((pos + i) % capacity)]));
}

/** Writes a 16-byte frame header at stream position `pos` of a ring (wrapping like the core). */
export function writeFrameHeader(
  seg: Buffer,
  ring: 's2c' | 'c2s',
  capacity: number,
  pos: number,
  header: { length: number; kind: number; flags?: number; id?: number; total?: number },
): void {
  const bytes = Buffer.alloc(16);
  bytes.writeUInt32LE(header.length >>> 0, 0);
  bytes[4] = header.kind & 0xff;
  bytes[5] = (header.flags ?? 0) & 0xff;
  bytes.writeUInt32LE((header.id ?? 0) >>> 0, 8);
  bytes.writeUInt32LE((header.total ?? header.length) >>> 0, 12);
  const base = ringData(ring, capacity);
  for (let i = 0; i < 16; i++) seg[base + ((pos + i) % capacity)] = bytes[i];
}

/**
 * Publishes one frame of an unknown kind at the reader's position of a ring: bytes no peer may
 * write, which the reader must refuse with ERR_PROTOCOL. Like a hostile peer, it does not ring.
 */
export function publishUnknownKindFrame(seg: Buffer, ring: 's2c' | 'c2s', capacity: number): void {
  const tail = seg.readUInt32LE(Layout[ring] + Layout.tail);
  writeFrameHeader(seg, ring, capacity, tail, { length: 0, kind: 0x7f });
  seg.writeUInt32LE((tail + 16) >>> 0, Layout[ring] + Layout.head);
}

/**
 * Rings the segment's readers, as a test in JavaScript can (it has no futex wake on a mapping):
 * rewrites byte 0 through write(2), which raises IN_MODIFY, and a channel's segment watch
 * takes that as a reason to look. Bytes published without a ring are not read until one comes,
 * like any peer's: an idle channel has no timer that would find them.
 */
export function ringSegment(name: string): void {
  const fd = fs.openSync(`/dev/shm${name}`, 'r+');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, 0);
    fs.writeSync(fd, byte, 0, 1, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** A small seeded PRNG (mulberry32), so a failing fuzz round can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
