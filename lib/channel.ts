import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';

import type { Observable } from 'rxjs';

import {
  checkModeAndOptions,
  checkRequestTimeout,
  DEFAULT_CLOSE_TIMEOUT,
  DEFAULT_POLL_WINDOW_US,
  type ChannelOptions,
  type RequestOptions,
} from './channel-options';
import { ChannelStreams, type ChannelState } from './channel-streams';
import { Connection } from './connection';
import { toBuffer, type Data } from './data';
import { createError, fromNativeError, nativeReason, ShmChannelError } from './errors';
import { closeAtExit, forgetAtExit, type ClosableAtExit } from './exit-cleanup';
import type { IncomingRequest } from './incoming-request';
import type { NotificationBatch } from './notification-batch';
import { PeerState, SegmentState, WakeEvent, type NativeChannel } from './native';
import { release, type LoanedBuffer } from './loans';
import { validateName } from './names';
import { attachSegment, checkServerLimit, createSegment } from './open-segment';
import { PollLoop, PUMP_ENDED } from './poll-loop';
import { RequestTable } from './request-table';
import { channelIdle } from './message-pool';

export type { ChannelOptions, RequestOptions } from './channel-options';

const debug = debuglog('shmchannel');

export const Mode = { SERVER: 'server', CLIENT: 'client' } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];

export type { ChannelState } from './channel-streams';

/**
 * One end of a shared-memory channel. Both ends can notify, request and handle requests.
 *
 * ## Example
 * ```ts
 * const server = new Channel('/demo', 'server');
 * await server.open();
 * server.requests$.subscribe((req) => req.respond(req.data));
 * ```
 */
export class Channel implements ClosableAtExit {
  readonly name: string;
  readonly mode: Mode;

  private readonly options: Readonly<ChannelOptions>;
  private native: NativeChannel | undefined;
  /** From open() on, also after close (answers still go out while it delivers the queue). */
  private connection: Connection | undefined;
  private readonly poll: PollLoop;
  private opening = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private failure: ShmChannelError | undefined;
  private referenced = true;

  private readonly streams = new ChannelStreams();
  private readonly requests: RequestTable;

  /** Lifecycle of this end: see ChannelState. Replays the current state to new subscribers. */
  readonly state$: Observable<ChannelState> = this.streams.state$;
  /** Every notification the peer sends while subscribed. Completes on close. */
  readonly notifications$: Observable<Buffer> = this.streams.notifications.observable;
  /**
   * The same notifications, one value per group read from the ring together: for millions of
   * small messages, which cost one emission per batch here instead of one each. A batch's
   * messages are views valid only during its emission (see NotificationBatch). Completes and
   * errors with notifications$.
   */
  readonly notificationBatches$: Observable<NotificationBatch> = this.streams.batches.observable;
  /** Every request the peer sends. With no subscriber, the peer gets ERR_NO_HANDLER. */
  readonly requests$: Observable<IncomingRequest> = this.streams.requests.observable;
  /**
   * Server: the ERR_PROTOCOL of each client that broke the protocol. Such a client is dropped
   * (requests to it fail with the same error, its requests are cancelled, it is told to leave)
   * and the server goes on with the next one, as a `net.Server` outlives a bad connection; its
   * streams do not end.
   * Never emits on a client. Completes on close.
   */
  readonly clientErrors$: Observable<ShmChannelError> = this.streams.clientErrors.observable;

  constructor(name: string, mode: Mode, options: ChannelOptions = {}) {
    validateName(name);
    checkModeAndOptions(mode, options);
    this.name = name;
    this.mode = mode;
    this.options = { ...options };
    this.poll = new PollLoop(
      (options.pollWindowUs ?? DEFAULT_POLL_WINDOW_US) / 1000,
      (events) => this.pump(events),
      () => this.armWaker(),
    );
    this.requests = new RequestTable({
      name,
      checkCanRequest: (payload) => this.connected().checkCanRequest(payload),
      sendRequest: (id, payload) => this.connected().sendRequest(id, payload),
      sendCancel: (id) => this.connection?.sendCancel(id),
    });
  }

  get isOpen(): boolean {
    return this.native !== undefined;
  }

  get state(): ChannelState {
    return this.streams.state;
  }

  /** Creates (server) or attaches to (client) the segment. */
  async open(): Promise<void> {
    if (this.closed) throw this.closedError();
    if (this.native !== undefined || this.opening) {
      throw createError('ERR_ALREADY_OPEN', `channel ${this.name} is already open`);
    }
    this.opening = true;
    try {
      const onWake = (events: number) => this.poll.onWake(events);
      this.native =
        this.mode === 'server'
          ? createSegment(this.name, this.options, onWake)
          : await attachSegment(this.name, this.options, onWake, () => this.closed);
    } finally {
      this.opening = false;
    }
    if (this.closed) {
      // close() was called while a client waited for its server.
      this.native.close();
      this.native = undefined;
      throw this.closedError();
    }
    const info = this.native.info();
    try {
      if (this.mode === 'client') checkServerLimit(this.name, info, this.options);
    } catch (err) {
      this.native.close();
      this.native = undefined;
      throw err;
    }
    const native = this.native;
    this.connection = new Connection(native, info, this.options, this.mode, this.name, this.requests, {
      notificationsObserved: () => this.streams.notifications.observed,
      notification: (data) => this.streams.notifications.next(data),
      batchesObserved: () => this.streams.batches.observed,
      notificationBatch: (batch) => this.streams.batches.next(batch),
      requestsObserved: () => this.streams.requests.observed,
      request: (request) => this.streams.requests.next(request),
      hello: () => {
        if (this.mode === 'server') this.streams.enter('connected');
      },
      bye: () => this.onPeerBye(),
      failed: (err) => this.fail(err),
      sent: () => this.poll.start(),
      closing: () => this.closed,
      checkPeerAttached: () => this.checkPeerAttached(),
    });
    if (!this.referenced) this.native.unref();
    closeAtExit(this);
    debug('%s %s open: ring %d B, max message %d B', this.mode, this.name, info.ringCapacity, info.maxMessageSize);
    if (this.mode === 'client') {
      this.connection.hello();
      this.streams.enter('connected');
    } else {
      this.streams.enter('open');
    }
    this.native.arm();
  }

  /**
   * Sends what is still queued (waiting up to closeTimeout while the peer reads), says
   * goodbye, ends the streams, fails pending requests with ERR_CHANNEL_CLOSED, cancels the
   * requests being handled, and (server) removes the segment. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown(true);
    return this.closing;
  }

  private async shutdown(drain: boolean): Promise<void> {
    // From here on sends fail with ERR_CHANNEL_CLOSED; responses may still arrive.
    this.closed = true;
    if (drain) {
      await this.connection?.drainBeforeClose(
        Date.now() + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT),
        () => this.failure === undefined && this.peerMayRead(),
      );
    }
    const native = this.native;
    const connection = this.connection;
    if (native !== undefined && connection !== undefined) connection.sayGoodbye(this.peerMayRead());
    this.native = undefined;
    connection?.detach(this.failure ?? (this.state === 'peer-lost' ? peerLostError(this.name) : this.closedError()));
    native?.close();
    channelIdle();
    forgetAtExit(this);
    this.requests.endAll(() => this.closedError());
    this.streams.close();
  }

  /** Whether anyone may still read what we send (not after the peer left). */
  private peerMayRead(): boolean {
    const state = this.streams.state;
    return this.native !== undefined && state !== 'peer-lost' && state !== 'closed';
  }

  /**
   * Sends a notification. Returns true when it is on its way to the ring (small messages go
   * there together at the end of the tick), false when (part of) it waits in the outgoing
   * queue because the ring is full: like `socket.write()`, keep sending if you must, but
   * `await drained()` before the next burst. Past maxQueuedBytes this throws ERR_QUEUE_FULL
   * (nothing is sent). The data is copied before this returns.
   */
  notify(data: Data): boolean {
    const payload = toBuffer(data, 'notification data');
    return this.connected().notify(payload);
  }

  /**
   * Sends every message of `messages` as a notification, in order, with one call: what notify()
   * does for each, at the cost of one. All or nothing: if one is too large, or they would not
   * all fit in the outgoing queue (ERR_QUEUE_FULL; a group larger than maxQueuedBytes never
   * does), none is sent. Returns false when some wait in the queue (see notify()).
   */
  notifyMany(messages: Iterable<Data>): boolean {
    if (
      typeof messages === 'string' ||
      typeof (messages as Partial<Iterable<Data>> | null)?.[Symbol.iterator] !== 'function'
    ) {
      throw createError('ERR_INVALID_ARG_TYPE', 'notifyMany() takes an iterable (an array, say) of messages');
    }
    const payloads: Buffer[] = [];
    for (const m of messages) payloads.push(toBuffer(m, 'notification data'));
    return this.connected().notifyMany(payloads);
  }

  /**
   * Resolves once nothing waits in the outgoing queue: every message sent so far is in the
   * ring, for the peer to read. Rejects with ERR_PEER_LOST if the peer leaves first (what was
   * queued for it is gone), ERR_PROTOCOL if the channel fails or (server) drops its client
   * first, or ERR_CHANNEL_CLOSED if the channel closes or is not open.
   */
  drained(): Promise<void> {
    let connection: Connection;
    try {
      connection = this.connected();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return connection.drained();
  }

  /**
   * Zero-copy: a writable Buffer of `size` bytes in this side's loan pool (shared memory; the
   * server's `poolSize`). Fill it and pass it (or a subarray of it) to notify(), request(),
   * respond() or next(): only a 16-byte descriptor crosses the ring, and the Buffer is detached
   * (length 0) from that moment, so no write can reach a message in flight. A loan never sent
   * goes back with release(buf) or `using` (it has a `Symbol.dispose`), and at close().
   * Throws ERR_POOL_EXHAUSTED when the pool has no run of `size` free bytes now, or
   * waitForLoan() calls wait for room (they come first), ERR_MESSAGE_TOO_LARGE when it never can (larger than the pool or
   * maxMessageSize, or no pool at all), ERR_CHANNEL_CLOSED when not open.
   */
  loan(size: number): LoanedBuffer {
    return this.connected().loans.loan(size);
  }

  /**
   * loan(), once the pool has the room: resolves when the peer has released enough (loans are
   * handed out in the order asked for, before any loan() asked later). Rejects as loan() throws,
   * except for ERR_POOL_EXHAUSTED, and with ERR_CHANNEL_CLOSED or ERR_PEER_LOST if the channel
   * closes, or a client loses its server, first; a server's waiters outlive its clients.
   */
  waitForLoan(size: number): Promise<LoanedBuffer> {
    let connection: Connection;
    try {
      connection = this.connected();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return connection.loans.waitForLoan(size);
  }

  /**
   * Gives back a loan that was not sent, or a message borrowed with the `borrow` option: its
   * Buffer is detached, and its memory is the owner's again. Idempotent (a loan already sent,
   * a view already given back or gone with the peer: nothing happens), and nothing happens for
   * any other bytes, so a borrowing receiver may release every message it got, whichever way it
   * came. ERR_INVALID_ARG_TYPE for something that is not a Uint8Array.
   */
  release(buffer: Buffer): void {
    release(buffer);
  }

  /** Bytes waiting in the outgoing queue for room in the ring (0 when the peer keeps up). */
  get queuedBytes(): number {
    return this.connection?.queuedBytes ?? 0;
  }

  /**
   * Sends a request when subscribed and emits every value of its response. Cold: each
   * subscription is one request; unsubscribing cancels it at the handler. Only arguments of
   * the wrong type or value throw here; whatever depends on the channel's state (closed, not
   * open, no peer, queue full, message too large) reaches the subscriber as an error.
   */
  request(data: Data, options: RequestOptions = {}): Observable<Buffer> {
    const payload = toBuffer(data, 'request data');
    const timeout = checkRequestTimeout(options.timeout ?? this.options.requestTimeout);
    return this.requests.request(payload, timeout);
  }

  /** An open channel keeps the process alive, like a socket; unref() lets it exit. */
  unref(): this {
    this.referenced = false;
    this.native?.unref();
    return this;
  }

  ref(): this {
    this.referenced = true;
    this.native?.ref();
    return this;
  }

  /**
   * @internal ClosableAtExit: the process is ending. The exit path cannot await, so this
   * writes what is queued while the peer reads, blocking for at most closeTimeout, releases
   * the segment, and warns (SHMCHANNEL_UNSENT) of what is left.
   */
  closeAtExit(startedAt: number): void {
    const connection = this.connection;
    if (this.native === undefined || connection === undefined) return;
    this.native = undefined;
    connection.closeAtExit(startedAt + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT));
  }

  // ---- the wake-up path ----

  /**
   * Hands the ring back to the waker. Not once closing after the peer left: nothing more can
   * come, and a peer's leave flag would end each of its waits at once until the close ends.
   */
  private armWaker(): void {
    if (!(this.closed && this.streams.state === 'peer-lost')) this.native?.arm();
    channelIdle();
  }

  /**
   * Drains, flushes and handles peer loss: PUMP_READ, PUMP_SENT if it read or sent anything,
   * PUMP_MORE if it stopped reading for the budget, PUMP_ENDED if the channel ended meanwhile.
   */
  private pump(events: number): number {
    if (this.native === undefined) return PUMP_ENDED;
    let result = 0;
    try {
      result = this.connection?.pump() ?? 0;
    } catch (err) {
      // A server drops a client that broke the protocol and goes on; anything else ends here.
      this.fail(err);
    }
    try {
      if ((events & WakeEvent.PEER_LOST) !== 0 && this.native !== undefined) this.onPeerGone();
    } catch (err) {
      this.fail(err);
    }
    return this.native === undefined ? PUMP_ENDED : result;
  }

  // ---- peer loss and failure ----

  /** The peer said goodbye. Its requests end now; a server frees the slot once it detached. */
  private onPeerBye(): void {
    debug('%s %s: peer said goodbye', this.mode, this.name);
    this.loseRequests();
    if (this.mode === 'client') this.closeNow();
  }

  /** The waker found the peer gone (closed, exited, killed). */
  private onPeerGone(): void {
    const native = this.native;
    if (native === undefined) return;
    if (this.mode === 'client') {
      if ((native.info().state & SegmentState.CLIENT_DROPPED) !== 0) {
        // The server reads nothing more from us: like a lost peer, what is queued goes nowhere.
        this.streams.enter('peer-lost');
        this.fail(
          createError('ERR_PROTOCOL', `server ${this.name} dropped this client: it refused what this client wrote`),
        );
        return;
      }
      debug('client %s: server is gone', this.name);
      this.loseRequests();
      this.closeNow();
      return;
    }
    // Only a client that attached can be lost, and only if it is still gone now: the event may
    // be stale, from before a new client attached.
    if ((native.info().state & SegmentState.CLIENT_ATTACHED) === 0) return;
    if (native.peerState() !== PeerState.GONE) return;
    debug('server %s: client is gone', this.name);
    this.loseRequests();
    this.connection?.peerLeft(
      createError('ERR_PEER_LOST', `the client of ${this.name} left before reading what was queued`),
    );
    native.acceptNext();
    // What the client held of our pool is ours again.
    this.connection?.loans.retryWaiters();
    this.streams.enter('open');
  }

  /**
   * Server: the client broke the protocol. It is told to leave and nothing more is read from
   * it; its requests fail with `error`, and what was queued for it is gone. Once it has left
   * (or died), onPeerGone takes the next client as usual.
   */
  private dropClient(native: NativeChannel, error: ShmChannelError): void {
    if (this.connection === undefined || this.connection.isDropping) return;
    debug('server %s dropped its client: %s', this.name, error.message);
    native.dropClient();
    this.connection.drop(error);
    // Why first, then that the client is gone: state$ watchers (the CLI) tell it in that order.
    this.streams.clientDropped(this.name, error);
    if (!this.closed) this.streams.enter('peer-lost');
  }

  private loseRequests(): void {
    this.streams.enter('peer-lost');
    this.requests.endAll(() => peerLostError(this.name));
  }

  /**
   * A protocol violation or an internal failure: report it on the streams and close. A server
   * drops a client that broke the protocol instead, unless the segment itself lost pages.
   */
  private fail(err: unknown): void {
    if (this.native === undefined || this.failure !== undefined) return;
    const error = err instanceof ShmChannelError ? err : fromNativeError(err);
    if (this.mode === 'server' && error.code === 'ERR_PROTOCOL' && nativeReason(err) !== 'TRUNCATED') {
      try {
        this.dropClient(this.native, error);
        return;
      } catch (dropErr) {
        debug('server %s cannot drop its client: %s', this.name, (dropErr as Error).message);
      }
    }
    this.failure = error;
    debug('%s %s failed: %s', this.mode, this.name, error.message);
    this.requests.failPending(() => error);
    this.streams.fail(error);
    this.closeNow();
  }

  /** Closes without waiting for the queue: the peer is gone or the channel is broken. */
  private closeNow(): void {
    this.closing ??= this.shutdown(false);
  }

  // ---- helpers ----

  /** The connection, or why there is none to send on: closed, or not open yet. */
  private connected(): Connection {
    if (this.closed) throw this.closedError();
    if (this.connection === undefined) {
      throw createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is not open: call open() first`);
    }
    return this.connection;
  }

  /** A server's request needs a client to answer it; none attached would mean waiting forever. */
  private checkPeerAttached(): void {
    if (this.mode === 'client' || this.streams.state === 'connected') return;
    // Attached but its hello not read yet counts as connected.
    if (this.native !== undefined && (this.native.info().state & SegmentState.CLIENT_ATTACHED) !== 0) return;
    throw createError('ERR_PEER_LOST', `no client is connected to ${this.name}: nobody could answer the request`);
  }

  private closedError(): ShmChannelError {
    return createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is closed`);
  }
}

function peerLostError(name: string): ShmChannelError {
  return createError('ERR_PEER_LOST', `the peer of ${name} went away`);
}
