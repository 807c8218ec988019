// OutboundQueue (lib/outbound-queue.ts), the writing half of a channel, on its own: over the
// native side of a real segment (lib/open-segment.ts), with a client attached whose ring this
// test reads itself, or a peer process that reads it as a Channel would. No fake ring.
import { performance } from 'node:perf_hooks';

import { expect } from 'chai';

import type { NativeChannel } from '../lib/native';
import { attachSegment, createSegment } from '../lib/open-segment';
import { OutboundQueue } from '../lib/outbound-queue';
import {
  FrameKind,
  frameSize,
  headerWords,
  MessageAssembler,
  readFrameHeader,
  type FrameHeader,
} from '../lib/protocol';
import { expectThrowsCode } from './helpers/expect-error';
import { uniqueName } from './helpers/names';
import { patternBuffer } from './helpers/payload';
import { Peer } from './helpers/peer';
import { releaseAll } from './helpers/resources';

const ignoreWakes = () => undefined;
/** Four whole frames of a 4 KiB ring (payload 1008, 16-byte headers): not a byte left. */
const FILLS_RING = 4032;

interface Message {
  kind: number;
  id: number;
  data: Buffer;
}

/** The client's end of the ring the queue writes: reads the frames and joins fragments. */
class RingReader {
  /** The header of every frame read, in order. */
  readonly frames: FrameHeader[] = [];
  private readonly target: Buffer;
  private readonly assembler = new MessageAssembler((length) => Buffer.alloc(length));

  constructor(
    private readonly native: NativeChannel,
    ringCapacity: number,
  ) {
    this.target = Buffer.alloc(ringCapacity);
  }

  /** Every whole message in the ring now, in order; reading frees their space. */
  drain(): Message[] {
    const messages: Message[] = [];
    const words = headerWords(this.target);
    for (;;) {
      const length = this.native.read(this.target, 0xffffffff);
      if (length === 0) return messages;
      for (let at = 0; at < length;) {
        const header: FrameHeader = { length: 0, kind: 0, flags: 0, id: 0, total: 0 };
        readFrameHeader(this.target, words, at, header);
        this.frames.push(header);
        const payload = this.target.subarray(at + 16, at + 16 + header.length);
        const whole = this.assembler.push(header.kind, header.id, header.total, payload);
        if (whole !== undefined) messages.push({ kind: header.kind, id: header.id, data: whole });
        at += frameSize(header.length);
      }
    }
  }

  /** The texts of every whole message in the ring now. */
  texts(): string[] {
    return this.drain().map((m) => m.data.toString());
  }
}

/**
 * The native channel as the queue sees it, counting the calls it makes (each passed on as it
 * is): the native object's methods cannot be replaced, so the queue is given this view of it.
 */
function counting(native: NativeChannel): { view: NativeChannel; calls: { write: number; writeFrames: number } } {
  const calls = { write: 0, writeFrames: 0 };
  const view = new Proxy(native, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property === 'write' || property === 'writeFrames') {
        return (...args: unknown[]) => {
          calls[property]++;
          return method.apply(target, args);
        };
      }
      return method.bind(target);
    },
  });
  return { view, calls };
}

/** Lets process.nextTick callbacks run: the end of the tick, where the queue writes its batch. */
function endOfTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const opened: NativeChannel[] = [];

/** A server's native channel and an OutboundQueue over it, with a client attached (or not). */
async function queueOver(options: { ringCapacity?: number; maxQueuedBytes?: number; attach?: boolean } = {}) {
  const name = uniqueName('outbound');
  const writer = createSegment(
    name,
    { ringCapacity: options.ringCapacity ?? 4096, maxMessageSize: 1 << 20 },
    ignoreWakes,
  );
  opened.unshift(writer);
  const { ringCapacity, maxFramePayload } = writer.info();
  const writeErrors: unknown[] = [];
  const { view, calls } = counting(writer);
  const queue = new OutboundQueue(view, ringCapacity, maxFramePayload, options.maxQueuedBytes ?? 1 << 20, (err) =>
    writeErrors.push(err),
  );
  let reader: RingReader | undefined;
  if (options.attach !== false) {
    const client = await attachSegment(name, { connectTimeout: 0 }, ignoreWakes, () => false);
    opened.unshift(client);
    reader = new RingReader(client, ringCapacity);
  }
  return { name, queue, writer, calls, reader: reader!, ringCapacity, maxFramePayload, writeErrors };
}

/** Sends `count` numbered NOTIFY messages `${prefix}${i}`; returns what send() said of each. */
function sendNumbered(queue: OutboundQueue, prefix: string, count: number): boolean[] {
  return Array.from({ length: count }, (_, i) => queue.send(FrameKind.NOTIFY, 0, Buffer.from(`${prefix}${i}`)));
}

function numbered(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

describe('OutboundQueue (lib/outbound-queue.ts)', function () {
  afterEach(async function () {
    await releaseAll();
    for (const native of opened.splice(0)) native.close();
  });

  describe('batching', function () {
    it('should write the small messages of one tick with one native call, at the end of the tick', async function () {
      const { queue, calls, reader } = await queueOver();
      expect(sendNumbered(queue, 'small ', 50)).to.deep.equal(Array(50).fill(true));
      expect(reader.drain()).to.deep.equal([]);
      expect(queue.isEmpty).to.equal(false);
      await endOfTick();
      expect(calls).to.deep.equal({ write: 0, writeFrames: 1 });
      expect(reader.texts()).to.deep.equal(numbered('small ', 50));
      expect(queue.isEmpty).to.equal(true);
    });

    it('should keep the kind and id of each message, and write empty messages', async function () {
      const { queue, reader } = await queueOver();
      queue.send(FrameKind.REQUEST, 7, Buffer.from('ask'));
      queue.send(FrameKind.RESPONSE, 7, Buffer.alloc(0));
      queue.send(FrameKind.COMPLETE, 7, Buffer.alloc(0), true);
      await endOfTick();
      expect(reader.drain().map((m) => [m.kind, m.id, m.data.toString()])).to.deep.equal([
        [FrameKind.REQUEST, 7, 'ask'],
        [FrameKind.RESPONSE, 7, ''],
        [FrameKind.COMPLETE, 7, ''],
      ]);
    });

    it('should copy a small message when sent: the caller may reuse its buffer at once', async function () {
      const { queue, reader } = await queueOver();
      const reused = Buffer.from('first');
      queue.send(FrameKind.NOTIFY, 0, reused);
      reused.write('later');
      await endOfTick();
      expect(reader.texts()).to.deep.equal(['first']);
    });

    it('should write a message over the batch limit at once, straight from the caller, flushing the batch before it', async function () {
      const { queue, calls, reader } = await queueOver({ ringCapacity: 65536 });
      const large = patternBuffer(1025, 1); // over the batch limit, 1 KiB; one frame
      queue.send(FrameKind.NOTIFY, 0, Buffer.from('before'));
      expect(queue.send(FrameKind.NOTIFY, 0, large)).to.equal(true);
      queue.send(FrameKind.NOTIFY, 0, Buffer.from('after'));
      expect(calls).to.deep.equal({ write: 1, writeFrames: 1 });
      expect(reader.drain().map((m) => m.data)).to.deep.equal([Buffer.from('before'), large]);
      await endOfTick();
      expect(reader.texts()).to.deep.equal(['after']);
    });

    it('should split a message larger than a frame into fragments that each carry the whole length', async function () {
      const { queue, reader, maxFramePayload } = await queueOver({ ringCapacity: 65536 });
      const message = patternBuffer(3 * maxFramePayload + 5, 2);
      expect(queue.send(FrameKind.NOTIFY, 0, message)).to.equal(true);
      const [received] = reader.drain();
      expect(received.data.equals(message)).to.equal(true);
      expect(reader.frames.map((f) => [f.length, f.total])).to.deep.equal([
        [maxFramePayload, message.length],
        [maxFramePayload, message.length],
        [maxFramePayload, message.length],
        [5, message.length],
      ]);
    });
  });

  describe('when the ring is full', function () {
    it('should queue what does not fit, return false, and write it in order on flush() once the reader made room', async function () {
      const { queue, reader } = await queueOver();
      const messages = [0, 1, 2, 3].map((seed) => patternBuffer(3000, seed));
      expect(messages.map((m) => queue.send(FrameKind.NOTIFY, 0, m))).to.deep.equal([true, false, false, false]);
      expect(queue.bytesQueued).to.be.greaterThan(6000).and.at.most(9000);
      const received: Buffer[] = [];
      while (!queue.isEmpty) {
        received.push(...reader.drain().map((m) => m.data));
        queue.flush();
      }
      received.push(...reader.drain().map((m) => m.data));
      expect(received).to.deep.equal(messages);
      expect(queue.bytesQueued).to.equal(0);
    });

    it('should own a queued message: the caller may reuse its buffer at once', async function () {
      const { queue, reader } = await queueOver();
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(3500, 0));
      const reused = patternBuffer(3000, 1);
      expect(queue.send(FrameKind.NOTIFY, 0, reused)).to.equal(false);
      reused.fill(0);
      reader.drain();
      queue.flush();
      expect(reader.drain().map((m) => m.data)).to.deep.equal([patternBuffer(3000, 1)]);
    });

    it('should keep a batch that did not fit (stalled), count it as queued, and write it before what was queued after it', async function () {
      const { queue, calls, reader } = await queueOver();
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(3800, 0)); // the ring is nearly full
      sendNumbered(queue, 'batched ', 20);
      await endOfTick(); // the batch is tried, and stalls
      expect(queue.bytesQueued).to.be.greaterThan(0);
      const stalled = queue.bytesQueued;
      // Small messages join the stalled batch, but count as queued; larger ones queue behind it.
      expect(queue.send(FrameKind.NOTIFY, 0, Buffer.from('joins the batch'))).to.equal(false);
      expect(queue.bytesQueued).to.equal(stalled + 'joins the batch'.length);
      expect(queue.send(FrameKind.NOTIFY, 0, patternBuffer(1500, 1))).to.equal(false);
      const batchWritesBefore = calls.writeFrames;
      const received: Buffer[] = [];
      while (!queue.isEmpty) {
        received.push(...reader.drain().map((m) => m.data));
        queue.flush();
      }
      received.push(...reader.drain().map((m) => m.data));
      expect(received.slice(1)).to.deep.equal([
        ...numbered('batched ', 20).map((t) => Buffer.from(t)),
        Buffer.from('joins the batch'),
        patternBuffer(1500, 1),
      ]);
      // The stalled batch was retried whole, in one call, not message by message.
      expect(calls.writeFrames - batchWritesBefore).to.equal(1);
    });
  });

  describe('#sendMany()', function () {
    it('should write what send() one by one would, in order, into a full ring and a stalled batch too', async function () {
      const { queue, reader } = await queueOver();
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(3000, 0)); // most of the 4 KiB ring
      const group = [
        ...numbered('small ', 60).map((t) => Buffer.from(t)),
        patternBuffer(2000, 1), // over the batch's per-message limit: sent as send() would
        ...numbered('after ', 60).map((t) => Buffer.from(t)),
      ];
      expect(queue.sendMany(FrameKind.NOTIFY, group)).to.equal(false);
      await endOfTick();
      const received: Buffer[] = [];
      while (!queue.isEmpty) {
        received.push(...reader.drain().map((m) => m.data));
        queue.flush();
      }
      received.push(...reader.drain().map((m) => m.data));
      expect(received).to.deep.equal([patternBuffer(3000, 0), ...group]);
    });

    it('should batch a group with one native call when the ring has room', async function () {
      const { queue, calls, reader } = await queueOver({ ringCapacity: 64 * 1024 });
      const group = numbered('m', 200).map((t) => Buffer.from(t));
      expect(queue.sendMany(FrameKind.NOTIFY, group)).to.equal(true);
      await endOfTick();
      expect(calls.writeFrames).to.equal(1);
      expect(calls.write).to.equal(0);
      expect(reader.drain().map((m) => m.data)).to.deep.equal(group);
    });
  });

  describe('its bound (maxQueuedBytes)', function () {
    it('should refuse with ERR_QUEUE_FULL a message that would queue past the bound, and send nothing of it', async function () {
      const { queue, reader } = await queueOver({ maxQueuedBytes: 5000 });
      expect(queue.send(FrameKind.NOTIFY, 0, patternBuffer(3500, 0))).to.equal(true); // fills the ring
      expect(queue.send(FrameKind.NOTIFY, 0, patternBuffer(3000, 1))).to.equal(false); // 3000 queued
      const err = expectThrowsCode(() => queue.send(FrameKind.NOTIFY, 0, patternBuffer(2001, 2)), 'ERR_QUEUE_FULL');
      expect(err.message).to.equal(
        'outgoing queue full: 3000 bytes wait for the peer to read and 2001 more would pass maxQueuedBytes (5000)',
      );
      expectThrowsCode(() => queue.checkRoomFor(2001), 'ERR_QUEUE_FULL'); // for a group, all or nothing
      queue.checkRoomFor(2000);
      expect(queue.send(FrameKind.NOTIFY, 0, patternBuffer(2000, 3))).to.equal(false); // exactly at the bound
      const received: Buffer[] = [];
      while (!queue.isEmpty) {
        received.push(...reader.drain().map((m) => m.data));
        queue.flush();
      }
      received.push(...reader.drain().map((m) => m.data));
      expect(received).to.deep.equal([patternBuffer(3500, 0), patternBuffer(3000, 1), patternBuffer(2000, 3)]);
    });

    it('should count small messages that join a stalled batch against the bound', async function () {
      const { queue } = await queueOver({ maxQueuedBytes: 1200 });
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(FILLS_RING, 0)); // the ring is full
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(1000, 1)); // batched
      await endOfTick(); // and stalled: 1000 bytes wait
      expect(queue.bytesQueued).to.equal(1000);
      expect(queue.send(FrameKind.NOTIFY, 0, patternBuffer(200, 2))).to.equal(false);
      expectThrowsCode(() => queue.send(FrameKind.NOTIFY, 0, patternBuffer(1, 3)), 'ERR_QUEUE_FULL');
    });

    it('should let control frames (cancel, complete, error, bye) past the bound', async function () {
      const { queue, reader } = await queueOver({ maxQueuedBytes: 100 });
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(FILLS_RING, 0)); // the ring is full
      expect(queue.send(FrameKind.NOTIFY, 0, patternBuffer(100, 1))).to.equal(true); // batched: not tried yet
      await endOfTick(); // stalled: 100 bytes wait, the bound
      expectThrowsCode(() => queue.send(FrameKind.NOTIFY, 0, Buffer.from('x')), 'ERR_QUEUE_FULL');
      expect(queue.send(FrameKind.CANCEL, 9, Buffer.alloc(0), true)).to.equal(false);
      expect(queue.send(FrameKind.ERROR, 10, patternBuffer(2000, 2), true)).to.equal(false);
      const received: Message[] = [];
      while (!queue.isEmpty) {
        received.push(...reader.drain());
        queue.flush();
      }
      received.push(...reader.drain());
      expect(received.map((m) => [m.kind, m.id, m.data.length])).to.deep.equal([
        [FrameKind.NOTIFY, 0, FILLS_RING],
        [FrameKind.NOTIFY, 0, 100],
        [FrameKind.CANCEL, 9, 0],
        [FrameKind.ERROR, 10, 2000],
      ]);
    });
  });

  describe('#flushBlocking()', function () {
    it('should write everything while a peer reads, without returning to the event loop', async function () {
      const { name, queue } = await queueOver({ attach: false });
      const peer = await Peer.spawn({ name, mode: 'client' });
      const texts = numbered(`blocking ${'x'.repeat(900)} `, 300); // 270 KB through a 4 KiB ring
      for (const text of texts) queue.send(FrameKind.NOTIFY, 0, Buffer.from(text));
      queue.flushBlocking(performance.now() + 20_000, () => true);
      expect(queue.isEmpty).to.equal(true);
      expect((await peer.collect(texts.length)).map((n) => n.text)).to.deep.equal(texts);
    });

    it('should stop at the deadline when nobody reads, leaving the rest queued', async function () {
      const { queue } = await queueOver();
      sendNumbered(queue, `unread ${'x'.repeat(1000)} `, 10);
      const start = performance.now();
      queue.flushBlocking(start + 200, () => true);
      expect(performance.now() - start).to.be.at.least(200);
      expect(queue.isEmpty).to.equal(false);
      expect(queue.bytesQueued).to.be.greaterThan(0);
    });

    it('should stop at once when the peer does not read any more', async function () {
      const { queue } = await queueOver();
      sendNumbered(queue, `unread ${'x'.repeat(1000)} `, 10);
      let asked = 0;
      queue.flushBlocking(performance.now() + 60_000, () => (asked++, false));
      expect(asked).to.equal(1);
      expect(queue.isEmpty).to.equal(false);
    });
  });

  describe('#clear() and errors', function () {
    it('should report a batch that could not be written to onWriteError, and start empty again', async function () {
      const { queue, writer, writeErrors } = await queueOver();
      queue.send(FrameKind.NOTIFY, 0, Buffer.from('never written'));
      writer.close();
      await endOfTick();
      expect(writeErrors.map((e) => (e as { code?: string }).code)).to.deep.equal(['ERR_CHANNEL_CLOSED']);
      expect(queue.isEmpty).to.equal(true);
      expect(queue.bytesQueued).to.equal(0);
    });

    it('should drop everything batched and queued on clear()', async function () {
      const { queue, reader } = await queueOver();
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(FILLS_RING, 0));
      queue.send(FrameKind.NOTIFY, 0, Buffer.from('batched'));
      await endOfTick(); // the batch stalls
      queue.send(FrameKind.NOTIFY, 0, patternBuffer(3000, 1)); // queued behind it
      queue.send(FrameKind.NOTIFY, 0, Buffer.from('queued too'));
      expect(queue.bytesQueued).to.equal('batched'.length + 3000 + 'queued too'.length);
      queue.clear(() => undefined);
      expect(queue.isEmpty).to.equal(true);
      expect(queue.bytesQueued).to.equal(0);
      expect(reader.drain().map((m) => m.data.length)).to.deep.equal([FILLS_RING]);
      queue.flush();
      await endOfTick();
      expect(reader.drain()).to.deep.equal([]);
    });
  });
});
