// What no transport can beat with shmchannel's API on this machine: the cost of handing each
// message to an RxJS subscriber in JavaScript, with no transport at all. Measured in the bench
// process, in the same run, so the 64 B goal can be read against it.
import { Subject } from 'rxjs';

import { median } from './stats';

const MESSAGES = 2_000_000;
const RUNS = 5;

/**
 * Messages per second for: a view of 64 bytes in a batch (the cheapest way to give a message
 * its own `Buffer`), emitted through a Subject to a subscriber that checks the sequence number
 * and length, as the bench's receivers do. No copy, no allocation besides the view.
 */
export function deliveryFloor64(): number {
  const size = 64;
  const batch = Buffer.alloc(64 * 1024);
  const perBatch = batch.length / size;
  for (let i = 0; i < perBatch; i++) batch.writeUInt32LE(i, i * size);
  const subject = new Subject<Buffer>();
  let bad = 0;
  let expected = 0;
  subject.subscribe((data) => {
    if (data.length !== size || data.readUInt32LE(0) !== expected % perBatch) bad++;
    expected++;
  });
  const rates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    expected = 0;
    const start = process.hrtime.bigint();
    for (let i = 0; i < MESSAGES; i++) {
      const at = (i % perBatch) * size;
      subject.next(batch.subarray(at, at + size));
    }
    rates.push(MESSAGES / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  if (bad !== 0) throw new Error(`delivery floor: ${bad} messages failed the check`);
  return median(rates);
}
