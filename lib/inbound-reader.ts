// The receiving side of a channel: reads frames from the inbound ring in batches, hands whole
// messages to `dispatch`, and joins fragments of large messages as they come.
import { Buffer } from 'node:buffer';
import { markAsUntransferable } from 'node:worker_threads';

import { fromNativeError } from './errors';
import type { NativeChannel } from './native';
import { NotificationBatch } from './notification-batch';
import { PUMP_MORE, PUMP_READ } from './poll-loop';
import {
  EMPTY,
  FRAME_HEADER_SIZE,
  FrameKind,
  frameSize,
  headerWords,
  MessageAssembler,
  protocolError,
  readFrameHeader,
  viewOf,
  type FrameHeader,
} from './protocol';
import { allocateMessage } from './message-pool';

// Rings drained per event-loop turn before yielding to other work (timers, I/O).
const DRAIN_BUDGET_RINGS = 4;
// Messages from this size on go from the ring straight into their own Buffer: read() only
// announces them, and readContinuation copies them.
const DIRECT_READ_FROM = 64 * 1024;
// Received messages up to this size share slabs of up to SLAB_BYTES (see copySmallFrames).
const SLAB_MAX_MESSAGE = 4096;
const SLAB_BYTES = 32 * 1024;
const NO_SLAB = new ArrayBuffer(0);

/** Messages that arrived by reference (a loan of the peer's): their Buffers, and giving them back. */
export interface LoanedMessages {
  /** The message whose descriptor is at `at` in `frames`; `wanted` false: given back unread. */
  receive(frames: Buffer, at: number, total: number, wanted: boolean): Buffer;
  /** Gives back a message nobody kept (a borrowed view seen by batch subscribers only). */
  discard(message: Buffer): void;
}

/** Who wants notifications, and how: one Buffer each (notifications$), or in batches. */
export interface NotificationSinks {
  wantsEach(): boolean;
  wantsBatches(): boolean;
  /** Hands over a batch, valid until this returns. */
  batch(batch: NotificationBatch): void;
}

export class InboundReader {
  private readonly assembler = new MessageAssembler(allocateMessage);
  /** The peer's goodbye was read: it is the last frame a peer sends (until the next client). */
  private peerSaidBye = false;
  private readonly batch: Buffer;
  private readonly words: Uint32Array;
  private readonly header: FrameHeader = { length: 0, kind: 0, flags: 0, id: 0, total: 0 };
  private readonly pendingBatch = new NotificationBatch();
  /** Bytes of the messages read by reference since the drain looked: they count for its budget too. */
  private loanedBytes = 0;

  /**
   * `dispatch` gets each whole message; `reading` says whether to go on after it (a handler may
   * have closed the channel or dropped the client: the rest of the batch is moot then).
   * Notifications go to `notifications` instead, each or in batches.
   */
  constructor(
    ringCapacity: number,
    private readonly dispatch: (kind: number, id: number, data: Buffer) => void,
    private readonly reading: () => boolean,
    private readonly notifications: NotificationSinks,
    private readonly loaned: LoanedMessages,
  ) {
    this.batch = ringCapacity === 0 ? EMPTY : Buffer.allocUnsafeSlow(ringCapacity);
    // NotificationBatch hands out views of it: a transfer list must copy them, never detach
    // the memory the channel reads into.
    if (ringCapacity > 0) markAsUntransferable(this.batch.buffer);
    this.words = headerWords(this.batch);
  }

  /** Forgets a message cut off and the goodbye: the peer left or the channel closed. */
  reset(): void {
    this.assembler.reset();
    this.peerSaidBye = false;
  }

  /**
   * A server waiting for a dropped client to leave reads nothing (the native reader stays
   * failed), but this still reports a segment that lost pages.
   */
  checkWhileDropped(native: NativeChannel): void {
    native.read(this.batch, DIRECT_READ_FROM);
  }

  /** Reads and dispatches frames: PUMP_READ if it read any, PUMP_MORE if it stopped for the budget with data left. */
  drain(native: NativeChannel): number {
    const batch = this.batch;
    let budget = batch.length * DRAIN_BUDGET_RINGS;
    let read = 0;
    while (this.reading()) {
      const missing = this.assembler.missing();
      if (missing !== undefined) {
        // The rest of a large message goes from the ring straight into it, not through the batch.
        let got: number;
        try {
          got = native.readContinuation(missing);
        } catch (err) {
          // Only the peer's frames can put the native reader out of step with the assembler.
          if (fromNativeError(err).code === 'ERR_INVALID_ARG_VALUE') {
            throw protocolError('fragment out of step with its message');
          }
          // As thrown: the channel tells a lost segment from a bad peer by the native reason.
          throw err;
        }
        if (got === 0) return read;
        read = PUMP_READ;
        const message = this.assembler.filledIn(got);
        if (message !== undefined) {
          this.deliver(this.assembler.kind, this.assembler.id, message);
          if (!this.reading()) return read;
        }
        budget -= got;
        if (budget <= 0) return read | PUMP_MORE;
        continue;
      }
      const n = native.read(batch, DIRECT_READ_FROM);
      if (n === 0) return read;
      read = PUMP_READ;
      if (!this.dispatchBatch(n)) return read;
      budget -= n + this.loanedBytes;
      this.loanedBytes = 0;
      if (budget <= 0) return read | PUMP_MORE;
    }
    return read;
  }

  /** Dispatches the `n` bytes of frames just read into the batch; false once reading stopped. */
  private dispatchBatch(n: number): boolean {
    try {
      this.dispatchFrames(n);
    } finally {
      // Also when a frame is refused: what came before it was good, and is still in the batch.
      this.emitBatch();
    }
    return this.reading();
  }

  // Who wants notifications is asked again at every frame: a subscriber may come or go in any
  // call into user code, and from then on gets (or misses) the next one, as Broadcast promises.
  private dispatchFrames(n: number): void {
    const batch = this.batch;
    const h = this.header;
    let at = 0;
    // The slab holding the small messages from batch offset slabStart to slabEnd.
    let slab = NO_SLAB;
    let slabStart = 0;
    let slabEnd = 0;
    while (at < n) {
      if (n - at < FRAME_HEADER_SIZE) throw protocolError('truncated frame in read batch');
      // A goodbye is a peer's last frame: one read after it could only be a hostile peer's.
      if (this.peerSaidBye) throw protocolError('frames after goodbye');
      readFrameHeader(batch, this.words, at, h);
      const size = frameSize(h.length);
      if (at + size > n) throw protocolError('frame overruns read batch');
      // The native reader lets no flag through but LOANED, on whole messages it validated.
      if (h.flags !== 0) {
        if (this.pendingBatch.length > 0) {
          this.emitBatch();
          if (!this.reading()) return;
        }
        this.deliverLoaned(h.kind, h.id, h.total, at + FRAME_HEADER_SIZE);
        at += size;
        if (!this.reading()) return;
        continue;
      }
      const wholeNotification = h.kind === FrameKind.NOTIFY && h.length === h.total;
      if (wholeNotification) {
        // Views into the read batch itself: the batch is emitted before the next read.
        if (this.notifications.wantsBatches()) {
          if (this.pendingBatch.length === 0) this.pendingBatch.begin(batch);
          this.pendingBatch.add(at + FRAME_HEADER_SIZE, h.length);
        }
        if (!this.notifications.wantsEach()) {
          at += size;
          continue;
        }
      } else if (this.pendingBatch.length > 0) {
        // What came before this frame is emitted before it.
        this.emitBatch();
        if (!this.reading()) return;
      }
      let message: Buffer | undefined;
      if (h.length === h.total && h.length <= SLAB_MAX_MESSAGE && h.length > 0) {
        // A whole small message: a view of a slab copied from the batch (the batch is reused).
        if (at + size > slabEnd) {
          slab = copySmallFrames(batch, this.words, at, n);
          slabStart = at;
          slabEnd = at + slab.byteLength;
        }
        message = viewOf(slab, at - slabStart + FRAME_HEADER_SIZE, h.length);
      } else {
        // A fragment, or (length 0) the announcement of a large message: the assembler starts
        // it, and the next turn of the drain reads it with readContinuation.
        const chunk = batch.subarray(at + FRAME_HEADER_SIZE, at + FRAME_HEADER_SIZE + h.length);
        message = this.assembler.push(h.kind, h.id, h.total, chunk);
      }
      at += size;
      if (message !== undefined) {
        if (wholeNotification) this.dispatch(h.kind, h.id, message);
        else this.deliver(h.kind, h.id, message);
      }
      if (!this.reading()) return;
    }
  }

  /** Hands the batch gathered so far (if any) to its subscribers; after that it is empty. */
  private emitBatch(): void {
    if (this.pendingBatch.length > 0) this.notifications.batch(this.pendingBatch);
    this.pendingBatch.end();
  }

  /** A message sent by reference: read in place or copied, and given back once nobody has it. */
  private deliverLoaned(kind: number, id: number, total: number, descriptorAt: number): void {
    this.loanedBytes += total;
    if (kind !== FrameKind.NOTIFY) {
      this.dispatch(kind, id, this.loaned.receive(this.batch, descriptorAt, total, true));
      return;
    }
    const batches = this.notifications.wantsBatches();
    const each = this.notifications.wantsEach();
    const message = this.loaned.receive(this.batch, descriptorAt, total, batches || each);
    if (batches) {
      this.pendingBatch.begin(message);
      this.pendingBatch.add(0, message.length);
      this.emitBatch();
    }
    // Asked again: a batch subscriber may have subscribed or closed.
    if (this.reading() && this.notifications.wantsEach()) this.dispatch(kind, id, message);
    else this.loaned.discard(message);
  }

  /** A message assembled from fragments, or any frame but a whole notification. */
  private deliver(kind: number, id: number, message: Buffer): void {
    if (kind === FrameKind.BYE) this.peerSaidBye = true;
    if (kind === FrameKind.NOTIFY) {
      if (this.notifications.wantsBatches()) {
        // A batch of its own, over the message (which is the receiver's to keep anyway).
        this.pendingBatch.begin(message);
        this.pendingBatch.add(0, message.length);
        this.emitBatch();
        if (!this.reading()) return;
      }
      if (!this.notifications.wantsEach()) return;
    }
    this.dispatch(kind, id, message);
  }
}

/**
 * A copy, in an ArrayBuffer of its own, of the run of whole small messages that starts at `at`
 * in a read batch, up to SLAB_BYTES: one allocation and one copy for many messages, each then
 * handed out as a view. Small slabs bound what one message a subscriber keeps can hold alive,
 * as Node's own Buffer pool does.
 */
function copySmallFrames(batch: Buffer, words: Uint32Array, at: number, n: number): ArrayBuffer {
  const h: FrameHeader = { length: 0, kind: 0, flags: 0, id: 0, total: 0 };
  let end = at;
  while (end + FRAME_HEADER_SIZE <= n) {
    readFrameHeader(batch, words, end, h);
    if (h.flags !== 0 || h.length !== h.total || h.length > SLAB_MAX_MESSAGE) break;
    const next = end + frameSize(h.length);
    if (next - at > SLAB_BYTES || next > n) break;
    end = next;
  }
  // Not zero-filled, and the whole of its ArrayBuffer (allocUnsafe would share Node's pool).
  const slab = Buffer.allocUnsafeSlow(end - at);
  // Many messages share it: a transfer list must copy it, not detach the others (as with Node's
  // own pool).
  markAsUntransferable(slab.buffer);
  batch.copy(slab, 0, at, end);
  return slab.buffer;
}
