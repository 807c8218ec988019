/**
 * Zero-copy: a producer hands 8 MiB "video frames" to a consumer process by loans.
 *
 *   node dist/examples/zero-copy.js [frames]     (default 200)
 *
 * The producer (the server) writes each frame straight into a loan in its pool, in shared
 * memory, and sends it: only a 16-byte descriptor crosses the ring. The consumer (this file
 * again, forked, the client) opens with `borrow: true` and reads every frame in place, checks
 * every byte, and releases it, which gives the memory back to the producer's pool. The pool
 * holds four frames: when all four are with the consumer, `waitForLoan()` waits for a release
 * (the pool is the backpressure). At the end the producer asks the consumer what it saw,
 * prints the throughput, closes, and checks that its segment is gone from /dev/shm.
 * See docs/API.md, "Zero-copy".
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';

import { filter, firstValueFrom, lastValueFrom } from 'rxjs';

import { Channel, type LoanedBuffer } from '../lib/index';

const FRAME_SIZE = 8 << 20;
const POOL_FRAMES = 4;

const [role, ...rest] = process.argv.slice(2);

/** The picture every frame carries (the same on both sides), xorshift32 noise. */
function picture(): Buffer {
  const words = new Uint32Array(FRAME_SIZE / 4);
  let x = 2463534242;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer);
}

/** What the consumer reports when asked. */
interface Summary {
  frames: number;
  bad: number;
}

async function producer(frames: number): Promise<void> {
  const name = `/shmchannel-zero-copy-${process.pid}`;
  const source = picture();
  // poolSize: shared memory per direction for loans, allocated (posix_fallocate) at open().
  const channel = new Channel(name, 'server', { poolSize: POOL_FRAMES * FRAME_SIZE });
  await channel.open();
  const consumer = fork(__filename, ['consumer', name, String(frames)]);
  const consumerExit = once(consumer, 'exit') as Promise<[number | null, string | null]>;
  try {
    await firstValueFrom(channel.state$.pipe(filter((s) => s === 'connected')));
    const started = process.hrtime.bigint();
    for (let i = 0; i < frames; i++) {
      // A loan of 8 MiB in our pool; waits while the consumer holds all four.
      const frame = await channel.waitForLoan(FRAME_SIZE);
      // "Decode" the frame into it: the picture, stamped with its number at both ends.
      source.copy(frame);
      frame.writeUInt32LE(i, 0);
      frame.writeUInt32LE(i, FRAME_SIZE - 4);
      // Sent by reference; from here on the frame is the consumer's.
      if (!channel.notify(frame)) await channel.drained();
      if (frame.length !== 0) throw new Error('a sent loan should be detached');
    }
    // Requests and notifications share one ordered stream: this arrives after the last frame.
    const reply = await lastValueFrom(channel.request('summary', { timeout: 30_000 }));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const summary = JSON.parse(reply.toString()) as Summary;
    const gigabytes = (frames * FRAME_SIZE) / 1e9;
    console.log(
      `[producer] ${frames} frames of ${FRAME_SIZE >> 20} MiB in ${seconds.toFixed(2)} s: ` +
        `${(frames / seconds).toFixed(0)} frames/s, ${(gigabytes / seconds).toFixed(2)} GB/s`,
    );
    console.log(`[producer] the consumer checked ${summary.frames} frames, ${summary.bad} bad`);
    if (summary.frames !== frames || summary.bad !== 0) process.exitCode = 1;
    const [code] = await consumerExit;
    if (code !== 0) process.exitCode = 1;
  } finally {
    if (consumer.exitCode === null && consumer.signalCode === null) consumer.kill();
    await channel.close(); // unlinks the segment
  }
  const left = existsSync(`/dev/shm${name}`);
  console.log(`[producer] segment ${left ? 'LEFT in' : 'removed from'} /dev/shm`);
  if (left) process.exitCode = 1;
}

async function consumer(name: string, frames: number): Promise<void> {
  const source = picture();
  // borrow: frames sent from a loan arrive as views into the producer's pool, not copies.
  // Only for a peer trusted not to write into a frame after sending it.
  const channel = new Channel(name, 'client', { borrow: true, connectTimeout: 10_000 });
  let seen = 0;
  let bad = 0;
  channel.notifications$.subscribe((message) => {
    // Released (given back to the producer's pool) when this block ends. The cast: a borrowed
    // view has the [Symbol.dispose] of a loan, which the stream's type, Buffer, does not show.
    using frame = message as LoanedBuffer;
    const whole =
      frame.length === FRAME_SIZE &&
      frame.readUInt32LE(0) === seen &&
      frame.readUInt32LE(FRAME_SIZE - 4) === seen &&
      frame.compare(source, 4, FRAME_SIZE - 4, 4, FRAME_SIZE - 4) === 0;
    if (!whole) bad++;
    seen++;
  });
  const asked = firstValueFrom(channel.requests$);
  await channel.open();
  const request = await asked;
  request.respond(JSON.stringify({ frames: seen, bad } satisfies Summary));
  if (seen !== frames) console.error(`[consumer] expected ${frames} frames, got ${seen}`);
  await channel.close();
}

function main(): Promise<void> {
  if (role === 'consumer') return consumer(rest[0], Number(rest[1]));
  const frames = role === undefined ? 200 : Number(role);
  if (!Number.isInteger(frames) || frames < 1) {
    console.error('usage: node dist/examples/zero-copy.js [frames]');
    process.exitCode = 2;
    return Promise.resolve();
  }
  return producer(frames);
}

main().catch((err: unknown) => {
  console.error(`[${role === 'consumer' ? 'consumer' : 'producer'}]`, err);
  process.exitCode = 1;
});
