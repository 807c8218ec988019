// One peer on one segment: a client, or a server of one client (maxClients 1), which takes
// its clients one after the other on the same rings. What a Channel was before it had many
// clients; Channel delegates to it.
import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';

import type { Observable } from 'rxjs';

import { DEFAULT_CLOSE_TIMEOUT, DEFAULT_POLL_WINDOW_US, type ChannelOptions } from './channel-options';
import type { ChannelCore } from './channel-core';
import type { ChannelStreams } from './channel-streams';
import { createError, fromNativeError, nativeReason, ShmChannelError } from './errors';
import { closeAtExit, forgetAtExit } from './exit-cleanup';
import type { LoanedBuffer } from './loans';
import { channelIdle } from './message-pool';
import { PeerState, SegmentState, WakeEvent, type NativeChannel } from './native';
import { attachSegment, checkServerLimit, createSegment } from './open-segment';
import { PeerLink } from './peer-link';
import { PollLoop, PUMP_ENDED } from './poll-loop';
import { RequestTable } from './request-table';

const debug = debuglog('shmchannel');

export class SinglePeer implements ChannelCore {
  private native: NativeChannel | undefined;
  /** From open() on, also after close (answers still go out while it delivers the queue). */
  private link: PeerLink | undefined;
  private readonly poll: PollLoop;
  private opening = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private failure: ShmChannelError | undefined;
  private referenced = true;
  private readonly requests: RequestTable;

  constructor(
    private readonly name: string,
    private readonly mode: 'server' | 'client',
    private readonly options: Readonly<ChannelOptions>,
    private readonly streams: ChannelStreams,
  ) {
    this.poll = new PollLoop(
      (options.pollWindowUs ?? DEFAULT_POLL_WINDOW_US) / 1000,
      (events) => this.pump(events),
      () => this.armWaker(),
    );
    this.requests = new RequestTable({
      name,
      checkCanRequest: (payload) => this.connected().checkCanRequest(payload),
      sendRequest: (id, payload) => this.connected().sendRequest(id, payload),
      sendCancel: (id) => this.link?.sendCancel(id),
    });
  }

  get isOpen(): boolean {
    return this.native !== undefined;
  }

  get queuedBytes(): number {
    return this.link?.queuedBytes ?? 0;
  }

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
    this.link = new PeerLink(native, info, this.options, this.mode, this.name, this.requests, {
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
      this.link.hello();
      this.streams.enter('connected');
    } else {
      this.streams.enter('open');
    }
    this.native.arm();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown(true);
    return this.closing;
  }

  private async shutdown(drain: boolean): Promise<void> {
    // From here on sends fail with ERR_CHANNEL_CLOSED; responses may still arrive.
    this.closed = true;
    if (drain) {
      await this.link?.drainBeforeClose(
        Date.now() + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT),
        () => this.failure === undefined && this.peerMayRead(),
      );
    }
    const native = this.native;
    const link = this.link;
    if (native !== undefined && link !== undefined) link.sayGoodbye(this.peerMayRead());
    this.native = undefined;
    link?.detach(this.failure ?? (this.streams.state === 'peer-lost' ? peerLostError(this.name) : this.closedError()));
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

  notify(payload: Buffer): boolean {
    return this.connected().notify(payload);
  }

  notifyMany(payloads: readonly Buffer[]): boolean {
    return this.connected().notifyMany(payloads);
  }

  drained(): Promise<void> {
    let link: PeerLink;
    try {
      link = this.connected();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return link.drained();
  }

  loan(size: number): LoanedBuffer {
    return this.connected().loans.loan(size);
  }

  waitForLoan(size: number): Promise<LoanedBuffer> {
    let link: PeerLink;
    try {
      link = this.connected();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return link.loans.waitForLoan(size);
  }

  request(payload: Buffer, timeout: number | undefined): Observable<Buffer> {
    return this.requests.request(payload, timeout);
  }

  unref(): void {
    this.referenced = false;
    this.native?.unref();
  }

  ref(): void {
    this.referenced = true;
    this.native?.ref();
  }

  /**
   * ClosableAtExit: the process is ending. The exit path cannot await, so this writes what is
   * queued while the peer reads, blocking for at most closeTimeout, releases the segment, and
   * warns (SHMCHANNEL_UNSENT) of what is left.
   */
  closeAtExit(startedAt: number): void {
    const link = this.link;
    if (this.native === undefined || link === undefined) return;
    this.native = undefined;
    link.closeAtExit(startedAt + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT));
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
      result = this.link?.pump() ?? 0;
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
          createError(
            'ERR_PROTOCOL',
            `server ${this.name} dropped this client: it refused what this client wrote, ` +
              'or (a server of many) this client fell too far behind to take a broadcast',
          ),
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
    this.link?.peerLeft(createError('ERR_PEER_LOST', `the client of ${this.name} left before reading what was queued`));
    native.acceptNext();
    // What the client held of our pool is ours again.
    this.link?.loans.retryWaiters();
    this.streams.enter('open');
  }

  /**
   * Server: the client broke the protocol. It is told to leave and nothing more is read from
   * it; its requests fail with `error`, and what was queued for it is gone. Once it has left
   * (or died), onPeerGone takes the next client as usual.
   */
  private dropClient(native: NativeChannel, error: ShmChannelError): void {
    if (this.link === undefined || this.link.isDropping) return;
    debug('server %s dropped its client: %s', this.name, error.message);
    native.dropClient();
    this.link.drop(error);
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

  /** The link, or why there is none to send on: closed, or not open yet. */
  private connected(): PeerLink {
    if (this.closed) throw this.closedError();
    if (this.link === undefined) {
      throw createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is not open: call open() first`);
    }
    return this.link;
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
