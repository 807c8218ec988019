// One peer on one pair of rings: what goes out (the queue), what comes in (the reader), the
// requests in flight both ways, and the callers of drained(). A channel of one peer owns one from
// open() to its close, a server of many one per client (in its Connection); the owner decides
// what the link's events mean.
import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';

import { queueBound, type ChannelOptions } from './channel-options';
import { DrainWaiters } from './drain-waiters';
import { createError, fromNativeError, ShmChannelError } from './errors';
import { warnAtExit } from './exit-cleanup';
import { InboundReader } from './inbound-reader';
import { Loans } from './loans';
import type { NotificationBatch } from './notification-batch';
import type { Connection } from './connection';
import { IncomingRequest, type ResponseSink } from './incoming-request';
import { PeerState, SegmentState, type NativeChannel, type NativeChannelInfo } from './native';
import { OutboundQueue } from './outbound-queue';
import { PUMP_SENT } from './poll-loop';
import { EMPTY, fitRemoteError, FrameKind, protocolError } from './protocol';
import { RequestTable } from './request-table';

const debug = debuglog('shmchannel');

/** What a peer link tells its owner, and asks of it. */
export interface PeerLinkEvents {
  /** Whether anyone wants each notification as a Buffer of its own (notifications$). */
  notificationsObserved(): boolean;
  notification(data: Buffer): void;
  /** Whether anyone wants notifications in batches (notificationBatches$). */
  batchesObserved(): boolean;
  /** The notifications read together; valid until this returns. */
  notificationBatch(batch: NotificationBatch): void;
  /** Whether anyone handles requests now; if not, the connection answers ERR_NO_HANDLER itself. */
  requestsObserved(): boolean;
  request(request: IncomingRequest): void;
  hello(): void;
  bye(): void;
  /** A write failed (a corrupt ring, a lost segment): the channel drops the peer or fails. */
  failed(err: unknown): void;
  /** Something went out: the answer may follow within microseconds. */
  sent(): void;
  /** The channel is closing: only answers and cancels still go out. */
  closing(): boolean;
  /** Throws if a request now could never be answered (a server with no client). */
  checkPeerAttached(): void;
  /** A server of many clients: the client this link is to, for IncomingRequest.client. */
  readonly client?: Connection;
}

export class PeerLink implements ResponseSink {
  readonly maxMessageSize: number;
  /** Zero-copy: loans out of this side's pool, messages borrowed from the peer's. */
  readonly loans: Loans;
  private readonly outbound: OutboundQueue;
  private readonly inbound: InboundReader;
  private readonly drainWaiters = new DrainWaiters();
  /** Server: the client broke the protocol and was told to leave; nothing is read until it has. */
  private dropping = false;
  /** The channel let go of the segment: nothing more goes out or comes in. */
  private detached = false;

  constructor(
    readonly native: NativeChannel,
    info: NativeChannelInfo,
    options: Readonly<ChannelOptions>,
    private readonly mode: 'server' | 'client',
    private readonly name: string,
    /** The requests in flight on this connection, both ways. */
    readonly requests: RequestTable,
    private readonly events: PeerLinkEvents,
  ) {
    this.maxMessageSize = info.maxMessageSize;
    this.loans = new Loans(native, info.poolCapacity, info.maxMessageSize, options.borrow === true, name, (err) =>
      events.failed(err),
    );
    this.inbound = new InboundReader(
      info.ringCapacity,
      (kind, id, data) => this.dispatch(kind, id, data),
      () => this.reading,
      {
        wantsEach: () => events.notificationsObserved(),
        wantsBatches: () => events.batchesObserved(),
        batch: (batch) => events.notificationBatch(batch),
      },
      this.loans,
    );
    this.outbound = new OutboundQueue(
      native,
      info.ringCapacity,
      info.maxFramePayload,
      queueBound(options, info.maxMessageSize, info.ringCapacity),
      (err) => events.failed(err),
    );
  }

  /** Frames are read and dispatched: not detached, and not waiting for a dropped client to leave. */
  get reading(): boolean {
    return !this.detached && !this.dropping;
  }

  get isDropping(): boolean {
    return this.dropping;
  }

  get queuedBytes(): number {
    return this.outbound.bytesQueued;
  }

  get queueIsEmpty(): boolean {
    return this.outbound.isEmpty;
  }

  /** Says hello (a client's first frame). */
  hello(): void {
    this.outbound.send(FrameKind.HELLO, 0, EMPTY, true);
  }

  notify(payload: Buffer): boolean {
    this.checkSendable();
    return this.send(FrameKind.NOTIFY, 0, this.checkSize(payload));
  }

  /**
   * Sends every message of `payloads`, in order, or (ERR_MESSAGE_TOO_LARGE, ERR_QUEUE_FULL, a
   * closed channel) none of them. False when some wait in the outgoing queue.
   */
  notifyMany(payloads: readonly Buffer[]): boolean {
    this.checkMaySend(false);
    let total = 0;
    for (const p of payloads) {
      if (p.length === 0) this.loans.refuseDetached(p);
      total += this.checkSize(p).length;
    }
    let inRing: boolean;
    try {
      this.outbound.checkRoomFor(total);
      inRing = this.outbound.sendMany(FrameKind.NOTIFY, payloads);
    } catch (err) {
      throw this.writeFailed(err);
    }
    this.events.sent();
    return inRing;
  }

  /** What RequestTable asks before a request goes out: see RequestSender. */
  checkCanRequest(payload: Buffer): void {
    this.checkSendable();
    this.checkSize(payload);
    this.events.checkPeerAttached();
  }

  sendRequest(id: number, payload: Buffer): void {
    this.send(FrameKind.REQUEST, id, payload);
  }

  sendCancel(id: number): void {
    this.send(FrameKind.CANCEL, id, EMPTY, true, true);
  }

  /** See Channel.drained(). */
  drained(): Promise<void> {
    try {
      this.checkSendable();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    try {
      this.outbound.flush();
    } catch (err) {
      this.events.failed(err);
      return Promise.reject(fromNativeError(err));
    }
    if (this.outbound.isEmpty) return Promise.resolve();
    return this.drainWaiters.wait();
  }

  /** @internal ResponseSink: frames of the responses this end sends. */
  sendResponse(kind: number, id: number, data: Buffer): void {
    if (kind === FrameKind.RESPONSE) this.checkSize(data);
    // An error text longer than the peer accepts must still end the request.
    const payload = kind === FrameKind.ERROR ? fitRemoteError(data, this.maxMessageSize) : data;
    // Answers to requests already received still go out while close() delivers the queue.
    this.send(kind, id, payload, kind !== FrameKind.RESPONSE, true);
  }

  /** @internal ResponseSink */
  unsent(data: unknown): void {
    if (data instanceof Uint8Array) this.loans.abandon(data);
  }

  /** @internal ResponseSink */
  finished(id: number): void {
    this.requests.answered(id);
  }

  /** Reads what came and writes what waits: PUMP_READ, PUMP_SENT, PUMP_MORE bits. Throws what broke. */
  pump(): number {
    if (this.dropping) {
      this.inbound.checkWhileDropped(this.native);
      return 0;
    }
    let result = this.inbound.drain(this.native);
    const queuedBefore = this.outbound.bytesQueued;
    this.outbound.flush();
    if (this.outbound.isEmpty) this.drainWaiters.settle();
    if (this.outbound.bytesQueued < queuedBefore) result |= PUMP_SENT;
    this.loans.retryWaiters();
    return result;
  }

  /**
   * close(): waits until nothing is queued, `deadline` (a Date.now() time) passes, or
   * `peerMayRead` says nobody will read. The waker flushes when the peer frees space; this
   * only waits for that to happen.
   */
  async drainBeforeClose(deadline: number, peerMayRead: () => boolean): Promise<void> {
    while (!this.outbound.isEmpty && peerMayRead() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /**
   * Writes what is queued and a goodbye, as far as the ring takes them. What is left is
   * reported with a SHMCHANNEL_UNSENT warning if the peer could still have read it.
   */
  sayGoodbye(peerMayRead: boolean): void {
    try {
      this.outbound.flush();
      this.outbound.send(FrameKind.BYE, 0, EMPTY, true);
      this.outbound.flush();
    } catch (err) {
      debug('%s: goodbye not sent: %s', this.label(), (err as Error).message);
    }
    // The goodbye itself may wait in the queue: the peer then learns from the state flag.
    const unsent = this.outbound.bytesQueued;
    if (unsent > 0 && peerMayRead) {
      process.emitWarning(
        `shmchannel: ${this.label()} closed with ${unsent} bytes its peer did not read within closeTimeout`,
        { code: 'SHMCHANNEL_UNSENT' },
      );
    }
  }

  /**
   * The process is ending, and the exit path cannot await: writes the queue while the peer
   * reads, blocking until `deadline` (a performance.now() time) at most, detaches the native
   * side, and warns (SHMCHANNEL_UNSENT, reported at once) of what is left. `closeNative`: how the
   * native side lets go (a server of many closes all its connections at once, after each wrote).
   */
  closeAtExit(deadline: number, closeNative: () => void = () => this.native.close()): void {
    try {
      this.outbound.flushBlocking(deadline, () => this.peerReadsNow());
    } catch (err) {
      debug('%s: queue not written at exit: %s', this.label(), (err as Error).message);
    }
    const unsent = this.outbound.isEmpty ? 0 : this.outbound.bytesQueued;
    const why = unsent > 0 && this.peerReadsNow() ? 'did not read within closeTimeout' : 'was gone';
    this.detached = true;
    closeNative();
    if (unsent > 0) {
      warnAtExit(
        `shmchannel: ${this.label()}: the process exited with ${unsent} bytes unsent: the peer ${why}`,
        'SHMCHANNEL_UNSENT',
      );
    }
  }

  /** Whether the peer still reads what we write, asked of the segment itself (no event loop at exit). */
  peerReadsNow(): boolean {
    if (this.dropping || this.detached) return false;
    const state = this.native.info().state;
    if (this.mode === 'client') {
      if ((state & (SegmentState.SERVER_CLOSED | SegmentState.CLIENT_DROPPED)) !== 0) return false;
    } else if ((state & SegmentState.CLIENT_ATTACHED) === 0 || (state & SegmentState.CLIENT_CLOSED) !== 0) {
      return false;
    }
    return this.native.peerState() !== PeerState.GONE;
  }

  /** The peer left: what was queued for it is gone, and drained() says why (`err`). */
  peerLeft(err: ShmChannelError): void {
    this.outbound.clear(this.unloan);
    this.loans.peerLeft();
    this.drainWaiters.settle(err);
    this.inbound.reset();
    this.dropping = false;
  }

  /**
   * Server: the client broke the protocol. Nothing more is read from it; its requests fail
   * with `error`, what was queued for it is gone. The channel flags it to leave.
   */
  drop(error: ShmChannelError): void {
    this.dropping = true;
    this.loans.pause();
    this.outbound.clear(this.unloan);
    this.drainWaiters.settle(error);
    this.inbound.reset();
    this.requests.endAll(() => error);
  }

  /** The channel lets go of the segment: drained() waiters learn `err` unless all went out. */
  detach(err: ShmChannelError): void {
    this.detached = true;
    if (this.outbound.isEmpty) this.drainWaiters.settle();
    // First: loans given back by the clear below must not go to waiters of a closing channel.
    this.loans.close(err);
    this.outbound.clear(this.unloan);
    this.drainWaiters.settle(err);
    // A message cut off by the close would otherwise hold its buffer as long as this object.
    this.inbound.reset();
  }

  /**
   * Every outgoing message goes through here; a corrupt outbound ring fails the channel.
   * `duringClose`: allowed while close() still delivers the queue (answers, cancels).
   */
  private send(kind: number, id: number, data: Buffer, control = false, duringClose = false): boolean {
    this.checkMaySend(duringClose);
    // A loan of ours goes by reference; any other bytes (a loan of another channel too) by copy.
    // (An empty Buffer may be a detached loan of any channel: take() refuses to send it.)
    const loan = (this.loans.poolCapacity > 0 || data.length === 0) && !control ? this.loans.take(data) : undefined;
    let inRing: boolean;
    try {
      inRing =
        loan === undefined
          ? this.outbound.send(kind, id, data, control)
          : this.outbound.sendLoaned(kind, id, loan.offset, loan.start, loan.length);
    } catch (err) {
      if (loan !== undefined) this.loans.unsent(loan.offset);
      throw this.writeFailed(err);
    }
    this.events.sent();
    return inRing;
  }

  /** Throws why nothing may be sent now. `duringClose`: answers and cancels, still allowed while closing. */
  private checkMaySend(duringClose: boolean): void {
    if (this.dropping && !this.events.closing()) {
      throw createError(
        'ERR_PEER_LOST',
        `the client of ${this.name} was dropped for breaking the protocol; the next one can connect once it left`,
      );
    }
    if (!(duringClose && !this.detached)) this.checkSendable();
  }

  /** What a write that threw means: a corrupt outbound ring fails the channel. The error to throw. */
  private writeFailed(err: unknown): ShmChannelError {
    if (err instanceof ShmChannelError) return err;
    const error = fromNativeError(err);
    // The native error itself: its reason tells a dropped client from a lost segment.
    if (error.code === 'ERR_PROTOCOL') this.events.failed(err);
    return error;
  }

  private readonly unloan = (offset: number): void => this.loans.unsent(offset);

  private label(): string {
    return `${this.mode} ${this.name}`;
  }

  private checkSendable(): void {
    if (this.events.closing()) throw createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is closed`);
  }

  private checkSize(payload: Buffer): Buffer {
    if (payload.length > this.maxMessageSize) {
      throw createError(
        'ERR_MESSAGE_TOO_LARGE',
        `message of ${payload.length} bytes exceeds maxMessageSize (${this.maxMessageSize}) of ${this.name}`,
      );
    }
    return payload;
  }

  private dispatch(kind: number, id: number, data: Buffer): void {
    switch (kind) {
      case FrameKind.NOTIFY:
        this.events.notification(data);
        return;
      case FrameKind.REQUEST:
        this.onRequest(id, data);
        return;
      case FrameKind.RESPONSE:
        if (!this.requests.response(id, data)) this.loans.discard(data);
        return;
      case FrameKind.COMPLETE:
        this.requests.complete(id);
        return;
      case FrameKind.ERROR:
        this.requests.remoteError(id, data);
        return;
      case FrameKind.CANCEL:
        this.requests.cancelled(id);
        return;
      case FrameKind.HELLO:
        this.events.hello();
        return;
      case FrameKind.BYE:
        this.events.bye();
        return;
      default:
        throw protocolError(`unknown frame kind ${kind}`);
    }
  }

  private onRequest(id: number, data: Buffer): void {
    this.requests.checkIncomingId(id);
    const request = new IncomingRequest(id, data, this, this.events.client);
    if (!this.events.requestsObserved()) {
      this.loans.discard(data);
      request.rejectUnhandled(`no handler for requests on ${this.label()}`);
      return;
    }
    this.requests.handling(request);
    this.events.request(request);
  }
}
