import { createError } from './errors';
import type { NativeChannel } from './native';

interface OutgoingMessage {
  kind: number;
  id: number;
  /** Length of the whole message: every fragment carries it. */
  total: number;
  /** The bytes not yet in the ring when the message was queued (or all of them). */
  rest: Buffer;
  /** Bytes of `rest` written to the ring so far. */
  written: number;
}

/**
 * Writes messages to the outbound ring as fragments, strictly in order. What does not fit
 * waits here until the reader frees space (flush() on the next wake). The wait is bounded:
 * a send that would queue past maxQueuedBytes throws ERR_QUEUE_FULL, so memory never grows
 * without limit and nothing is dropped silently.
 */
export class OutboundQueue {
  private readonly queue: OutgoingMessage[] = [];
  private head = 0;
  private queuedBytes = 0;

  constructor(
    private readonly native: NativeChannel,
    private readonly maxFramePayload: number,
    /** At least the largest message, so a message partly written can always be queued. */
    private readonly maxQueuedBytes: number,
  ) {}

  get isEmpty(): boolean {
    return this.head === this.queue.length;
  }

  get bytesQueued(): number {
    return this.queuedBytes;
  }

  /**
   * Sends a message now or queues it. `control` frames (cancel, complete, error, bye) are
   * small and bounded by the requests in flight, so they bypass the bound: a cancel must not
   * fail for lack of room. True when the whole message went into the ring, false when (part of)
   * it waits here.
   */
  send(kind: number, id: number, data: Buffer, control = false): boolean {
    const m: OutgoingMessage = { kind, id, total: data.length, rest: data, written: 0 };
    if (this.isEmpty) {
      if (this.writeFragments(m)) return true;
    } else if (!control && this.queuedBytes + data.length > this.maxQueuedBytes) {
      throw createError(
        'ERR_QUEUE_FULL',
        `outgoing queue full: ${this.queuedBytes} bytes wait for the peer to read ` +
          `and ${data.length} more would pass maxQueuedBytes (${this.maxQueuedBytes})`,
      );
    }
    // Own the unsent bytes: the caller may reuse its buffer as soon as we return.
    m.rest = Buffer.from(m.rest.subarray(m.written));
    m.written = 0;
    this.queue.push(m);
    this.queuedBytes += m.rest.length;
    return false;
  }

  /** Writes queued messages until the ring is full again or the queue is empty. */
  flush(): void {
    while (!this.isEmpty) {
      const m = this.queue[this.head];
      const before = m.written;
      const done = this.writeFragments(m);
      this.queuedBytes -= m.written - before;
      if (!done) return;
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

  clear(): void {
    this.queue.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
  }

  /** Writes fragments of m until done (true) or the ring is full (false). */
  private writeFragments(m: OutgoingMessage): boolean {
    do {
      const n = Math.min(this.maxFramePayload, m.rest.length - m.written);
      const chunk = m.rest.subarray(m.written, m.written + n);
      if (!this.native.write(m.kind, m.id, m.total, chunk)) return false;
      m.written += n;
    } while (m.written < m.rest.length);
    return true;
  }
}
