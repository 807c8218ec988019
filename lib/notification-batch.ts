// The notifications read from the ring in one go, handed to notificationBatches$ as one value.
import { Buffer } from 'node:buffer';

import { createError } from './errors';
import { viewOf } from './protocol';

/**
 * The notifications that arrived together, in order, as one value of
 * `channel.notificationBatches$`. Its messages live in memory the channel reuses as soon as the
 * emission ends: read them (or copy what you keep) during the emission. After it, the batch is
 * empty, and the same object carries the next batch.
 *
 * Two ways to read it: `for (const message of batch)` (or `at(i)`) gives each message as a
 * `Buffer` view; `bytes`, `offset(i)` and `size(i)` give the same bytes with no object per
 * message, the cheapest way through millions of small ones.
 *
 * ## Example
 * ```ts
 * channel.notificationBatches$.subscribe((batch) => {
 *   for (let i = 0; i < batch.length; i++) total += batch.bytes.readUInt32LE(batch.offset(i));
 * });
 * ```
 */
export class NotificationBatch implements Iterable<Buffer> {
  private memory: Buffer = EMPTY_BYTES;
  // Offsets and sizes of the messages in `memory`, two numbers per message.
  private places = new Uint32Array(256);
  private count = 0;

  /** The number of messages (0 outside an emission). */
  get length(): number {
    return this.count;
  }

  /** The memory the messages are in: message i is `bytes.subarray(offset(i), offset(i) + size(i))`. */
  get bytes(): Buffer {
    return this.memory;
  }

  offset(i: number): number {
    return this.places[this.check(i) * 2];
  }

  size(i: number): number {
    return this.places[this.check(i) * 2 + 1];
  }

  /** Message i as a view, valid during the emission. */
  at(i: number): Buffer {
    this.check(i);
    return viewOf(
      this.memory.buffer as ArrayBuffer,
      this.memory.byteOffset + this.places[i * 2],
      this.places[i * 2 + 1],
    );
  }

  *[Symbol.iterator](): Iterator<Buffer> {
    for (let i = 0; i < this.count; i++) yield this.at(i);
  }

  /** Copies of every message, each a Buffer of its own: what to keep past the emission. */
  copies(): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < this.count; i++) out.push(Buffer.from(this.at(i)));
    return out;
  }

  /** @internal Starts a batch over `memory` (the read batch, or one large message). */
  begin(memory: Buffer): void {
    this.memory = memory;
    this.count = 0;
  }

  /** @internal Adds the message at `offset` in the memory. */
  add(offset: number, size: number): void {
    if (this.count * 2 + 2 > this.places.length) {
      const grown = new Uint32Array(this.places.length * 2);
      grown.set(this.places);
      this.places = grown;
    }
    this.places[this.count * 2] = offset;
    this.places[this.count * 2 + 1] = size;
    this.count++;
  }

  /** @internal The emission ended: nothing of the memory may be reached through this any more. */
  end(): void {
    this.count = 0;
    this.memory = EMPTY_BYTES;
  }

  private check(i: number): number {
    if (!(Number.isInteger(i) && i >= 0 && i < this.count)) {
      throw createError(
        'ERR_INVALID_ARG_VALUE',
        this.count === 0
          ? 'this notification batch has ended: read its messages during the emission'
          : `message index ${String(i)} is outside the batch (0 to ${this.count - 1})`,
      );
    }
    return i;
  }
}

const EMPTY_BYTES = Buffer.alloc(0);
