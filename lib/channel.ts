import type { Buffer } from 'node:buffer';

import type { Observable } from 'rxjs';

import {
  checkModeAndOptions,
  checkRequestTimeout,
  DEFAULT_MAX_CLIENTS,
  type ChannelOptions,
  type RequestOptions,
} from './channel-options';
import type { ChannelCore } from './channel-core';
import { ChannelStreams, type ChannelState } from './channel-streams';
import type { Connection } from './connection';
import { toBuffer, toBuffers, type Data } from './data';
import type { ShmChannelError } from './errors';
import type { IncomingRequest } from './incoming-request';
import type { NotificationBatch } from './notification-batch';
import { release, type LoanedBuffer } from './loans';
import { validateName, validateServerName } from './names';
import { MultiClientServer } from './server';
import { SinglePeer } from './single-peer';

export type { ChannelOptions, RequestOptions } from './channel-options';

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
export class Channel {
  readonly name: string;
  readonly mode: Mode;

  private readonly options: Readonly<ChannelOptions>;
  private readonly streams = new ChannelStreams();
  /** One peer (a client, or a server with maxClients 1), or a server of many clients. */
  private readonly core: ChannelCore;

  /** Lifecycle of this end: see ChannelState. Replays the current state to new subscribers. */
  readonly state$: Observable<ChannelState> = this.streams.state$;
  /** Every notification the peer (a server: every client) sends while subscribed. Completes on close. */
  readonly notifications$: Observable<Buffer> = this.streams.notifications.observable;
  /**
   * The same notifications, one value per group read from the ring together: for millions of
   * small messages, which cost one emission per batch here instead of one each. A batch's
   * messages are views valid only during its emission (see NotificationBatch). Completes and
   * errors with notifications$.
   */
  readonly notificationBatches$: Observable<NotificationBatch> = this.streams.batches.observable;
  /**
   * Every request the peer (a server: every client) sends. With no subscriber, the peer gets
   * ERR_NO_HANDLER. On a server of many clients, each request's `client` is its Connection.
   */
  readonly requests$: Observable<IncomingRequest> = this.streams.requests.observable;
  /**
   * Server: the error of each client it dropped: ERR_PROTOCOL for one that broke the protocol
   * (requests to it fail with the same error, its requests are cancelled, it is told to leave),
   * and on a server of many ERR_QUEUE_FULL for one that could not take a broadcast within its
   * maxQueuedBytes. The server goes on with the others, as a `net.Server` outlives a bad
   * connection; its streams do not end. With no subscriber, a process warning
   * (SHMCHANNEL_CLIENT_DROPPED) says it instead. Never emits on a client. Completes on close.
   */
  readonly clientErrors$: Observable<ShmChannelError> = this.streams.clientErrors.observable;
  /**
   * A server of many clients (maxClients > 1): each client that connects, as a Connection, once
   * it said hello. Hot: a client that connects with nobody subscribed is served all the same
   * (its requests reach requests$). Never emits on a client or a server of one client.
   * Completes on close.
   */
  readonly clients$: Observable<Connection> = this.streams.clients.observable;

  constructor(name: string, mode: Mode, options: ChannelOptions = {}) {
    validateName(name);
    checkModeAndOptions(mode, options);
    this.name = name;
    this.mode = mode;
    this.options = { ...options };
    const manyClients = mode === 'server' && (this.options.maxClients ?? DEFAULT_MAX_CLIENTS) > 1;
    if (manyClients) validateServerName(name);
    this.core = manyClients
      ? new MultiClientServer(name, this.options, this.streams)
      : new SinglePeer(name, mode, this.options, this.streams);
  }

  get isOpen(): boolean {
    return this.core.isOpen;
  }

  get state(): ChannelState {
    return this.streams.state;
  }

  /** Creates (server) or attaches to (client) the segment. */
  open(): Promise<void> {
    return this.core.open();
  }

  /**
   * Sends what is still queued (waiting up to closeTimeout while the peer reads), says
   * goodbye, ends the streams, fails pending requests with ERR_CHANNEL_CLOSED, cancels the
   * requests being handled, and (server) removes the segment. Idempotent.
   */
  close(): Promise<void> {
    return this.core.close();
  }

  /**
   * Sends a notification. Returns true when it is on its way to the ring (small messages go
   * there together at the end of the tick), false when (part of) it waits in the outgoing
   * queue because the ring is full: like `socket.write()`, keep sending if you must, but
   * `await drained()` before the next burst. Past maxQueuedBytes this throws ERR_QUEUE_FULL
   * (nothing is sent). The data is copied before this returns.
   */
  notify(data: Data): boolean {
    return this.core.notify(toBuffer(data, 'notification data'));
  }

  /**
   * Sends every message of `messages` as a notification, in order, with one call: what notify()
   * does for each, at the cost of one. All or nothing: if one is too large, or they would not
   * all fit in the outgoing queue (ERR_QUEUE_FULL; a group larger than maxQueuedBytes never
   * does), none is sent. Returns false when some wait in the queue (see notify()).
   */
  notifyMany(messages: Iterable<Data>): boolean {
    return this.core.notifyMany(toBuffers(messages));
  }

  /**
   * Resolves once nothing waits in the outgoing queue: every message sent so far is in the
   * ring, for the peer to read. Rejects with ERR_PEER_LOST if the peer leaves first (what was
   * queued for it is gone), ERR_PROTOCOL if the channel fails or (server) drops its client
   * first, or ERR_CHANNEL_CLOSED if the channel closes or is not open.
   */
  drained(): Promise<void> {
    return this.core.drained();
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
    return this.core.loan(size);
  }

  /**
   * loan(), once the pool has the room: resolves when the peer has released enough (loans are
   * handed out in the order asked for, before any loan() asked later). Rejects as loan() throws,
   * except for ERR_POOL_EXHAUSTED, and with ERR_CHANNEL_CLOSED or ERR_PEER_LOST if the channel
   * closes, or a client loses its server, first; a server's waiters outlive its clients.
   */
  waitForLoan(size: number): Promise<LoanedBuffer> {
    return this.core.waitForLoan(size);
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
    return this.core.queuedBytes;
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
    return this.core.request(payload, timeout);
  }

  /** An open channel keeps the process alive, like a socket; unref() lets it exit. */
  unref(): this {
    this.core.unref();
    return this;
  }

  ref(): this {
    this.core.ref();
    return this;
  }
}
