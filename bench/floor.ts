// What no transport can beat with shmchannel's API on this machine: the cost of handing each
// message to an RxJS subscriber in JavaScript, with no transport at all (and for the batch row,
// of framing each message to send it; for the produced payloads, of making each message and
// checking every byte of it). Measured in the bench process, in the same run, so the
// 64 B, 1 MiB and produced-payload goals can be read against it.
import { Broadcast } from '../lib/broadcast';
import { DEFAULT_RING_CAPACITY } from '../lib/channel-options';
import type { NativeChannel } from '../lib/native';
import { NotificationBatch } from '../lib/notification-batch';
import { OutboundQueue } from '../lib/outbound-queue';
import { FRAME_HEADER_SIZE, FrameKind, frameSize, viewOf } from '../lib/protocol';
import { allocateMessage } from '../lib/message-pool';

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
 * Messages per second of each side of the batch row, with no transport. `send`: 64 B messages,
 * each stamped with its sequence number and framed into shmchannel's send batch
 * (lib/outbound-queue.ts) in groups of 1024, as notifyMany() frames them (sendMany), with a ring that takes
 * every batch at once and copies nothing; the channel's checks around it are left out too.
 * `deliver`: the same frames, 64 KiB of them per read, handed as one NotificationBatch each, as
 * the reader fills one, to an RxJS subscriber that checks every message where it lies, as the
 * bench's receiver does. The two sides run at once in two processes: the row cannot beat the
 * slower of them.
 */
export function batchFloor64(): { send: number; deliver: number } {
  const size = 64;
  const payload = Buffer.alloc(size, 0xa5);
  const ringTakesAll = { writeFrames: (_frames: Uint8Array, length: number) => length };
  const outbound = new OutboundQueue(
    ringTakesAll as unknown as NativeChannel,
    DEFAULT_RING_CAPACITY,
    DEFAULT_RING_CAPACITY,
    Number.MAX_SAFE_INTEGER,
    (err) => {
      throw err;
    },
  );
  // Groups as the bench's sender makes them: each message stamped, then the group sent.
  const GROUP = 1024;
  const group = Array.from({ length: GROUP }, () => Buffer.from(payload));
  const groups = Math.max(1, Math.floor(MESSAGES / GROUP));
  const sendRates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = process.hrtime.bigint();
    for (let g = 0; g < groups; g++) {
      for (let k = 0; k < GROUP; k++) group[k].writeUInt32LE(g * GROUP + k, 0);
      outbound.sendMany(FrameKind.NOTIFY, group);
    }
    sendRates.push((groups * GROUP) / (Number(process.hrtime.bigint() - start) / 1e9));
  }

  const read = Buffer.alloc(64 * 1024);
  const frame = frameSize(size);
  const perRead = Math.floor(read.length / frame);
  for (let i = 0; i < perRead; i++) read.writeUInt32LE(i, i * frame + FRAME_HEADER_SIZE);
  const batch = new NotificationBatch();
  const stream = new Broadcast<NotificationBatch>();
  let bad = 0;
  let expected = 0;
  stream.observable.subscribe((b) => {
    const bytes = b.bytes;
    for (let i = 0; i < b.length; i++) {
      const length = b.size(i);
      if (length !== size || bytes.readUInt32LE(b.offset(i)) !== expected % perRead) bad++;
      expected++;
    }
  });
  const deliverRates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    expected = 0;
    const start = process.hrtime.bigint();
    for (let sent = 0; sent < MESSAGES; sent += perRead) {
      batch.begin(read);
      for (let i = 0; i < perRead; i++) batch.add(i * frame + FRAME_HEADER_SIZE, size);
      stream.next(batch);
      batch.end();
    }
    deliverRates.push(expected / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  if (bad !== 0) throw new Error(`batch delivery floor: ${bad} messages failed the check`);
  return { send: median(sendRates), deliver: median(deliverRates) };
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

/**
 * GB/s of each side of a produced-payload row (payload1m, payload16m), with no transport:
 * `produce`, the sender's copy of each message from its source into a buffer already in use
 * (as into a loan of the pool, whose pages are mapped after the first round: four sources into
 * four buffers in rotation); `check`, the receiver's comparison of every byte of each message
 * with its original, as the bench's receivers do. The two run at once in two processes: the
 * row cannot beat the slower of them. Neither is a transport's cost: it is the work the row
 * asks of every transport.
 */
export function produceCheckFloor(size: number): { produce: number; check: number } {
  const count = 4;
  const sources = Array.from({ length: count }, (_, k) => Buffer.alloc(size, 0x11 * (k + 1)));
  const targets = Array.from({ length: count }, () => Buffer.alloc(size));
  const perRun = Math.max(16, (256 << 20) / size);
  const produceRates: number[] = [];
  const checkRates: number[] = [];
  let bad = 0;
  for (let run = 0; run < RUNS; run++) {
    let start = process.hrtime.bigint();
    for (let i = 0; i < perRun; i++) sources[i % count].copy(targets[i % count]);
    produceRates.push((perRun * size) / Number(process.hrtime.bigint() - start));
    start = process.hrtime.bigint();
    for (let i = 0; i < perRun; i++) if (!targets[i % count].equals(sources[i % count])) bad++;
    checkRates.push((perRun * size) / Number(process.hrtime.bigint() - start));
  }
  if (bad !== 0) throw new Error(`produce/check floor: ${bad} messages failed the check`);
  return { produce: median(produceRates), check: median(checkRates) };
}
