import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';

import { createError } from './errors';
import type { NativeChannel } from './native';
import { EMPTY, FRAME_HEADER_SIZE, frameLengthAt, frameSize, headerWords, writeFrameHeader } from './protocol';
import { OutboundPool } from './outbound-pool';

interface OutgoingMessage {
  kind: number;
  id: number;
  /** Length of the whole message: every fragment carries it. */
  total: number;
  /** The bytes not yet in the ring when the message was queued (or all of them). */
  rest: Buffer;
  /** Bytes of `rest` written to the ring so far. */
  written: number;
  /** `rest` is our copy from the outbound pool, to give back once written. */
  staged?: boolean;
  /** Sent by reference: the message is bytes [start, start + total) of the loan at this pool offset. */
  loan?: number;
  start?: number;
}

/** Small messages are batched into one native write per event-loop tick, up to this many bytes. */
const BATCH_BYTES = 64 * 1024;
/**
 * Messages up to this size go into the batch. Larger ones are copied straight from the
 * caller's buffer into the ring: for them a native call costs less than the extra copy.
 */
const BATCH_MAX_PAYLOAD = 1024;

// flushBlocking() sleeps on this between its looks at the ring.
const BLOCKING_SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));
const BLOCKING_LOOK_EVERY_MS = 1;

/**
 * Writes messages to the outbound ring as frames, strictly in order.
 *
 * Small messages are laid out as wire frames in a batch and written with one native call at
 * the end of the tick (process.nextTick), so a burst costs one call, one publish and at most
 * one doorbell instead of one each per message. What does not fit in the ring waits in a queue
 * until the reader frees space (flush() on the next wake). The wait is bounded: a send that
 * would queue past maxQueuedBytes throws ERR_QUEUE_FULL, so memory never grows without limit
 * and nothing is dropped silently.
 *
 * Order: the batch is only filled while the queue is empty, and what of it does not fit in
 * the ring stays in it (stalled) and is written before the queue, so batch-then-queue is
 * always the order of sending. A stalled batch still takes small messages that fit, but they
 * count as queued: send() returns false, and maxQueuedBytes applies.
 */
export class OutboundQueue {
  private readonly queue: OutgoingMessage[] = [];
  private head = 0;
  private queuedBytes = 0;
  private readonly batch: Buffer;
  private readonly batchWords: Uint32Array;
  private readonly batchMaxPayload: number;
  private batched = 0;
  /** Payload bytes of the frames in a stalled batch (0 while it is not stalled). */
  private stalledBytes = 0;
  private stalled = false;
  private batchFlushScheduled = false;
  private readonly pool = new OutboundPool();

  constructor(
    private readonly native: NativeChannel,
    ringCapacity: number,
    private readonly maxFramePayload: number,
    /** At least the largest message, so a message partly written can always be queued. */
    private readonly maxQueuedBytes: number,
    /** A scheduled batch write failed (the channel is closed or the ring corrupt). */
    private readonly onWriteError: (err: unknown) => void,
  ) {
    // Never more than half the ring: a batch should usually fit in one go.
    this.batch = Buffer.alloc(Math.min(BATCH_BYTES, ringCapacity / 2));
    this.batchWords = headerWords(this.batch);
    this.batchMaxPayload = Math.min(BATCH_MAX_PAYLOAD, maxFramePayload, this.batch.length - FRAME_HEADER_SIZE);
  }

  /** Nothing batched and nothing queued. */
  get isEmpty(): boolean {
    return this.batched === 0 && this.head === this.queue.length;
  }

  /** Message bytes waiting for room in the ring (a batch of this tick that has not been tried is not counted). */
  get bytesQueued(): number {
    return this.queuedBytes + this.stalledBytes;
  }

  /**
   * Sends a message now or queues it. `control` frames (cancel, complete, error, bye) are
   * small and bounded by the requests in flight, so they bypass the bound: a cancel must not
   * fail for lack of room. False when (part of) the message waits for room in the ring.
   */
  send(kind: number, id: number, data: Buffer, control = false): boolean {
    if (this.head === this.queue.length && data.length <= this.batchMaxPayload) {
      if (this.batched + frameSize(data.length) > this.batch.length) this.writeBatch();
      if (this.batched + frameSize(data.length) <= this.batch.length) {
        if (!this.stalled) {
          this.addToBatch(kind, id, data);
          return true;
        }
        if (!control) this.checkRoom(data.length);
        this.addToBatch(kind, id, data);
        this.stalledBytes += data.length;
        return false;
      }
    }
    const m: OutgoingMessage = { kind, id, total: data.length, rest: data, written: 0 };
    if (this.head === this.queue.length) {
      this.writeBatch();
      if (!this.stalled && this.writeFragments(m)) return true;
    }
    // A message partly in the ring must finish; one not started yet may be refused.
    if (m.written === 0 && !control) this.checkRoom(data.length);
    // Own the unsent bytes: the caller may reuse its buffer as soon as we return.
    m.rest = this.pool.copy(m.rest.subarray(m.written));
    m.staged = true;
    m.written = 0;
    this.enqueue(m);
    return false;
  }

  /**
   * send() for each of `payloads`, in order, with id 0 and none of them control frames: while
   * they go into the batch (nothing queued, the batch not stalled, small enough), with only the
   * batch's own per-message work.
   */
  sendMany(kind: number, payloads: readonly Buffer[]): boolean {
    let inRing = true;
    for (const data of payloads) {
      if (this.head === this.queue.length && !this.stalled && data.length <= this.batchMaxPayload) {
        if (this.batched + frameSize(data.length) > this.batch.length) this.writeBatch();
        if (!this.stalled && this.batched + frameSize(data.length) <= this.batch.length) {
          this.addToBatch(kind, 0, data);
          continue;
        }
      }
      inRing = this.send(kind, 0, data) && inRing;
    }
    return inRing;
  }

  /**
   * Sends a message by reference (one descriptor frame) or queues it, in order with the rest.
   * A queued loan holds pool memory, not queue memory: the pool bounds it, not maxQueuedBytes.
   * False when it waits for room in the ring.
   */
  sendLoaned(kind: number, id: number, offset: number, start: number, length: number): boolean {
    const m: OutgoingMessage = { kind, id, total: length, rest: EMPTY, written: 0, loan: offset, start };
    if (this.head === this.queue.length) {
      this.writeBatch();
      if (!this.stalled && this.writeFragments(m)) return true;
    }
    this.queue.push(m);
    return false;
  }

  /** Writes the batch, then queued messages, until the ring is full or nothing is left. */
  flush(): void {
    this.writeBatch();
    if (this.stalled) return;
    while (this.head < this.queue.length) {
      const m = this.queue[this.head];
      const before = m.written;
      const done = this.writeFragments(m);
      this.queuedBytes -= m.written - before;
      if (!done) return;
      if (m.staged === true) this.pool.release(m.rest);
      this.head++;
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
        // Under a constant backlog head never meets the end: drop the sent prefix now and then.
        this.queue.splice(0, this.head);
        this.head = 0;
      }
    }
  }

  /**
   * Flushes until nothing is left, `deadline` (a performance.now() time) passes, or `peerReads`
   * says nobody will read: for the exit path, which cannot await the wake that says the peer
   * freed space, and so looks again every few milliseconds.
   */
  flushBlocking(deadline: number, peerReads: () => boolean): void {
    for (;;) {
      this.flush();
      if (this.isEmpty || performance.now() >= deadline || !peerReads()) return;
      Atomics.wait(BLOCKING_SLEEP_CELL, 0, 0, BLOCKING_LOOK_EVERY_MS);
    }
  }

  /** Forgets everything unsent; loans among it go back to the pool through `unloan`. */
  clear(unloan: (offset: number) => void): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const loan = this.queue[i].loan;
      if (loan !== undefined) unloan(loan);
    }
    this.queue.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
    this.batched = 0;
    this.stalled = false;
    this.stalledBytes = 0;
    this.pool.clear();
  }

  private addToBatch(kind: number, id: number, data: Buffer): void {
    const b = this.batch;
    const at = this.batched;
    const length = data.length;
    writeFrameHeader(b, this.batchWords, at, kind, id, length, length);
    if (length > 0) b.set(data, at + FRAME_HEADER_SIZE);
    const size = frameSize(length);
    // Padding is never read, but the peer gets zeros rather than stale bytes of ours.
    if (size > FRAME_HEADER_SIZE + length) b.fill(0, at + FRAME_HEADER_SIZE + length, at + size);
    this.batched = at + size;
    if (!this.batchFlushScheduled) {
      this.batchFlushScheduled = true;
      process.nextTick(this.onBatchTick);
    }
  }

  private readonly onBatchTick = (): void => {
    this.batchFlushScheduled = false;
    try {
      this.writeBatch();
    } catch (err) {
      this.batched = 0;
      this.stalled = false;
      this.stalledBytes = 0;
      this.onWriteError(err);
    }
  };

  /**
   * Writes the batch. The frames that do not fit stay in it, moved to its start, and the batch
   * is stalled until a later write takes them all: one native call retries them all, where
   * queued messages would take one call (and one copy) each.
   */
  private writeBatch(): void {
    if (this.batched === 0) return;
    const end = this.batched;
    const taken = this.native.writeFrames(this.batch, end);
    if (taken === end) {
      this.batched = 0;
      this.stalled = false;
      this.stalledBytes = 0;
      return;
    }
    if (taken > 0) this.batch.copyWithin(0, taken, end);
    this.batched = end - taken;
    this.stalled = true;
    let payload = 0;
    for (let at = 0; at < this.batched; at += frameSize(frameLengthAt(this.batchWords, at)))
      payload += frameLengthAt(this.batchWords, at);
    this.stalledBytes = payload;
  }

  /**
   * Throws ERR_QUEUE_FULL unless `length` more bytes could all wait in the queue: for a group of
   * messages that goes out whole or not at all.
   */
  checkRoomFor(length: number): void {
    // This tick's batch first: what of it the ring cannot take waits, and counts, too.
    this.writeBatch();
    this.checkRoom(length);
  }

  /** Throws ERR_QUEUE_FULL if `length` more bytes waiting would pass maxQueuedBytes. */
  private checkRoom(length: number): void {
    const waiting = this.bytesQueued;
    if (waiting + length <= this.maxQueuedBytes) return;
    throw createError(
      'ERR_QUEUE_FULL',
      `outgoing queue full: ${waiting} bytes wait for the peer to read ` +
        `and ${length} more would pass maxQueuedBytes (${this.maxQueuedBytes})`,
    );
  }

  private enqueue(m: OutgoingMessage): void {
    this.queue.push(m);
    this.queuedBytes += m.rest.length;
  }

  /** Writes fragments of m until done (true) or the ring is full (false). */
  private writeFragments(m: OutgoingMessage): boolean {
    if (m.loan !== undefined) return this.native.writeLoan(m.kind, m.id, m.loan, m.start ?? 0, m.total);
    do {
      const n = Math.min(this.maxFramePayload, m.rest.length - m.written);
      const chunk = m.rest.subarray(m.written, m.written + n);
      if (!this.native.write(m.kind, m.id, m.total, chunk)) return false;
      m.written += n;
    } while (m.written < m.rest.length);
    return true;
  }
}
