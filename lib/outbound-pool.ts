import { Buffer } from 'node:buffer';

/**
 * Reusable memory for the copies the outgoing queue keeps of unsent large messages. A fresh
 * buffer of a megabyte comes from mmap and page-faults on every 4 KiB the copy touches, which
 * costs more than the copy itself; these blocks stay mapped. The queue knows when a copy is in
 * the ring, so it hands the block back then. (Received messages need native help for the
 * same, as their owner is the application: see message-pool.ts.)
 */
export class OutboundPool {
  /** Smaller copies come from Node's allocator, whose heap is warm anyway. */
  static readonly MIN_BLOCK = 64 * 1024;
  /** Idle blocks beyond this go to the garbage collector. */
  static readonly MAX_IDLE_BYTES = 32 * 1024 * 1024;

  private readonly idle = new Map<number, Buffer[]>();
  private idleBytes = 0;

  /** A copy of `data`; give it back with release() once it is no longer read. */
  copy(data: Buffer): Buffer {
    if (data.length < OutboundPool.MIN_BLOCK) return Buffer.from(data);
    const size = blockSize(data.length);
    let block = this.idle.get(size)?.pop();
    if (block === undefined) {
      block = Buffer.allocUnsafeSlow(size);
    } else {
      this.idleBytes -= size;
    }
    const copy = block.subarray(0, data.length);
    data.copy(copy);
    return copy;
  }

  /** A copy made by copy() is written out: its block may serve the next one. */
  release(copy: Buffer): void {
    const size = copy.buffer.byteLength;
    if (copy.length < OutboundPool.MIN_BLOCK || this.idleBytes + size > OutboundPool.MAX_IDLE_BYTES) return;
    let list = this.idle.get(size);
    if (list === undefined) this.idle.set(size, (list = []));
    list.push(Buffer.from(copy.buffer, 0, size));
    this.idleBytes += size;
  }

  clear(): void {
    this.idle.clear();
    this.idleBytes = 0;
  }
}

/**
 * The size class that holds `length`: four to a power of two from MIN_BLOCK (64, 80, 96, 112,
 * 128, 160 KiB, ...), so a block wastes at most a quarter of itself and similar sizes share it.
 */
function blockSize(length: number): number {
  let size = OutboundPool.MIN_BLOCK;
  while (size < length) size += 2 ** Math.floor(Math.log2(size)) / 4;
  return size;
}
