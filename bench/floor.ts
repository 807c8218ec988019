// What no transport can beat with shmchannel's API on this machine: the cost of handing each
// message to an RxJS subscriber in JavaScript, with no transport at all. Measured in the bench
// process, in the same run, so the 64 B and 1 MiB goals can be read against it.
import { Broadcast } from '../lib/broadcast';
import { viewOf } from '../lib/protocol';
import { allocateMessage } from '../lib/recycled-memory';

import { median } from './stats';

const MESSAGES = 2_000_000;
const RUNS = 5;

/**
 * Messages per second for: a view of 64 bytes in a batch, made as shmchannel makes it (the
 * cheapest way to give a message its own `Buffer`), emitted as a Channel emits
 * (lib/broadcast.ts) to an RxJS subscriber that checks the sequence number and length, as the
 * bench's receivers do. No copy, no allocation besides the view.
 */
export function deliveryFloor64(): number {
  const size = 64;
  const batch = Buffer.alloc(64 * 1024);
  const perBatch = batch.length / size;
  const memory = batch.buffer;
  for (let i = 0; i < perBatch; i++) batch.writeUInt32LE(i, i * size);
  const stream = new Broadcast<Buffer>();
  let bad = 0;
  let expected = 0;
  stream.observable.subscribe((data) => {
    if (data.length !== size || data.readUInt32LE(0) !== expected % perBatch) bad++;
    expected++;
  });
  const rates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    expected = 0;
    const start = process.hrtime.bigint();
    for (let i = 0; i < MESSAGES; i++) {
      const at = (i % perBatch) * size;
      stream.next(viewOf(memory, batch.byteOffset + at, size));
    }
    rates.push(MESSAGES / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  if (bad !== 0) throw new Error(`delivery floor: ${bad} messages failed the check`);
  return median(rates);
}

/**
 * GB/s for: 1 MiB messages, each copied once from a warm buffer (as from the ring) into a
 * Buffer of its own from shmchannel's allocator (recycled memory), emitted as a Channel emits
 * to an RxJS subscriber that compares it with the original, as the bench's receivers do. The event
 * loop turns every few messages, as a receiver's does, so collected blocks come back.
 */
export async function deliveryFloor1m(): Promise<number> {
  const size = 1 << 20;
  const perRun = 1024;
  const source = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) source.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, i);
  const original = Buffer.from(source);
  const stream = new Broadcast<Buffer>();
  let bad = 0;
  stream.observable.subscribe((data) => {
    if (!data.equals(original)) bad++;
  });
  const rates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < perRun; i++) {
      const message = allocateMessage(size);
      source.copy(message);
      stream.next(message);
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
    }
    rates.push((perRun * size) / (Number(process.hrtime.bigint() - start) / 1e9) / 1e9);
  }
  if (bad !== 0) throw new Error(`delivery floor: ${bad} messages failed the check`);
  return median(rates);
}
