// A server of many clients (maxClients > 1): a directory where clients ask to connect, and one
// Connection per client, each with rings, queues and pending requests of its own. One waker
// thread and one poll loop serve them all; Channel delegates to this.
import type { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { debuglog } from 'node:util';

import { Observable } from 'rxjs';

import {
  DEFAULT_CLOSE_TIMEOUT,
  DEFAULT_MAX_CLIENTS,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_POLL_WINDOW_US,
  type ChannelOptions,
} from './channel-options';
import type { ChannelCore } from './channel-core';
import type { ChannelStreams } from './channel-streams';
import { ClientSet } from './client-set';
import { Connection, type ConnectionHost } from './connection';
import { createError, fromNativeError, nativeReason, ShmChannelError } from './errors';
import { closeAtExit, forgetAtExit } from './exit-cleanup';
import type { LoanedBuffer } from './loans';
import { channelIdle } from './message-pool';
import { MAX_CLIENTS, type NativeChannel, type NativeServer } from './native';
import { acceptClients, endLeftClients } from './client-directory';
import { createServer } from './open-segment';
import { PollLoop, PUMP_ENDED } from './poll-loop';

const debug = debuglog('shmchannel');

// While the poll loop looks at the rings (the waker disarmed), it asks the directory for clients
// that connect or leave this often at most: each ask is a native call, and the rings' traffic
// must not keep a new client waiting.
const DIRECTORY_LOOK_MS = 1;

export class MultiClientServer implements ChannelCore {
  private native: NativeServer | undefined;
  private readonly clients: ClientSet;
  private readonly poll: PollLoop;
  /** The waker sleeps on the directory: accept() and left() would have to stop it first. */
  private armed = false;
  private lastDirectoryLook = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private referenced = true;
  private readonly maxMessageSize: number;
  /** What its connections tell it. */
  private readonly host: ConnectionHost;

  constructor(
    private readonly name: string,
    private readonly options: Readonly<ChannelOptions>,
    private readonly streams: ChannelStreams,
  ) {
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.clients = new ClientSet(name, (c, err) =>
      this.dropClient(c, err, 'could not take a broadcast within its maxQueuedBytes'),
    );
    this.poll = new PollLoop(
      (options.pollWindowUs ?? DEFAULT_POLL_WINDOW_US) / 1000,
      (events) => this.pump(events),
      () => this.armWaker(),
    );
    this.host = {
      name: this.name,
      debug: (message: string) => debug('server %s: %s', this.name, message),
      options: this.options,
      closing: () => this.closed,
      notificationsObserved: () => this.streams.notifications.observed,
      notification: (data: Buffer) => this.streams.notifications.next(data),
      batchesObserved: () => this.streams.batches.observed,
      notificationBatch: this.streams.batches.next.bind(this.streams.batches),
      requestsObserved: () => this.streams.requests.observed,
      request: this.streams.requests.next.bind(this.streams.requests),
      hello: (c: Connection) => {
        if (this.closed) return;
        this.streams.clients.next(c);
        this.streams.enter('connected');
      },
      failed: (c: Connection, err: unknown) => this.connectionFailed(c, err),
      sent: () => this.poll.start(),
      ended: (c: Connection, native: NativeChannel) => this.connectionEnded(c, native),
    };
  }

  get isOpen(): boolean {
    return this.native !== undefined;
  }

  get queuedBytes(): number {
    return this.clients.queuedBytes;
  }

  async open(): Promise<void> {
    if (this.closed) throw this.closedError();
    if (this.native !== undefined) throw createError('ERR_ALREADY_OPEN', `channel ${this.name} is already open`);
    this.native = createServer(this.name, this.options, (events) => {
      this.armed = false;
      this.poll.onWake(events);
    });
    if (!this.referenced) this.native.unref();
    closeAtExit(this);
    debug('server %s open for %d clients', this.name, this.options.maxClients ?? DEFAULT_MAX_CLIENTS);
    this.streams.enter('open');
    this.armWaker();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown(true);
    return this.closing;
  }

  /** Every client reads what is queued for it (closeTimeout at most), gets a goodbye, and is disconnected. */
  private async shutdown(drain: boolean): Promise<void> {
    this.closed = true;
    if (drain) {
      const deadline = Date.now() + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT);
      await Promise.all([...this.clients.values()].map((c) => c.drainBeforeClose(deadline)));
    }
    const native = this.native;
    this.native = undefined;
    for (const c of [...this.clients.values()]) c.sayGoodbyeAndEnd();
    this.clients.clear();
    native?.close();
    channelIdle();
    forgetAtExit(this);
    this.streams.close();
  }

  /** ClosableAtExit: each client gets what it reads by the deadline; then every connection ends at once. */
  closeAtExit(startedAt: number): void {
    const native = this.native;
    if (native === undefined) return;
    this.native = undefined;
    const deadline = startedAt + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT);
    for (const c of this.clients.values()) c.closeAtExit(deadline);
    this.clients.clear();
    native.close();
  }

  /**
   * To every connected client, each with its own backpressure: false when some client's copy
   * waits in its queue. A client whose queue cannot take it is dropped (ERR_QUEUE_FULL), never
   * waited for. With no client connected it reaches nobody (true).
   */
  notify(payload: Buffer): boolean {
    this.checkSendable(payload.length);
    return this.clients.broadcast(payload);
  }

  /** notifyMany() to every connected client: to each all, or (dropped: ERR_QUEUE_FULL) none. */
  notifyMany(payloads: readonly Buffer[]): boolean {
    this.checkSendable(0);
    for (const p of payloads) this.checkSendable(p.length);
    return this.clients.broadcastMany(payloads);
  }

  drained(): Promise<void> {
    try {
      this.checkSendable(0);
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return this.clients.drained(() => this.closed);
  }

  loan(size: number): LoanedBuffer {
    return this.soleClient('loan()', 'loan').loan(size);
  }

  waitForLoan(size: number): Promise<LoanedBuffer> {
    try {
      return this.soleClient('waitForLoan()', 'waitForLoan').waitForLoan(size);
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
  }

  /** To the one client connected; with none, ERR_PEER_LOST; with several, ERR_AMBIGUOUS_CLIENT. */
  request(payload: Buffer, timeout: number | undefined): Observable<Buffer> {
    return new Observable<Buffer>((subscriber) => {
      let client: Connection;
      try {
        client = this.soleClient('request()', 'request');
      } catch (err) {
        subscriber.error(err);
        return undefined;
      }
      return client.request(payload, { timeout }).subscribe(subscriber);
    });
  }

  unref(): void {
    this.referenced = false;
    this.native?.unref();
  }

  ref(): void {
    this.referenced = true;
    this.native?.ref();
  }

  // ---- the wake-up path ----

  private armWaker(): void {
    if (this.native !== undefined) {
      this.armed = true;
      this.native.arm();
    }
    channelIdle();
  }

  /** Takes clients that ask, ends those that left, and pumps every connection (PUMP_* bits). */
  private pump(events: number): number {
    const native = this.native;
    if (native === undefined) return PUMP_ENDED;
    const now = performance.now();
    if (!this.armed && (events !== 0 || now - this.lastDirectoryLook >= DIRECTORY_LOOK_MS)) {
      this.lastDirectoryLook = now;
      try {
        if (!this.closed) acceptClients(native, this.name, this.options.maxClients ?? MAX_CLIENTS, this.accepted);
        endLeftClients(native, this.clients);
      } catch (err) {
        this.fail(err);
        return PUMP_ENDED;
      }
    }
    let result = 0;
    for (const c of this.clients.values()) {
      try {
        result |= c.pump();
      } catch (err) {
        this.connectionFailed(c, err);
      }
    }
    return this.native === undefined ? PUMP_ENDED : result;
  }

  // ---- what its connections tell it ----

  /** A client asked and its connection is made: it is served from now on. */
  private readonly accepted = (id: number, pid: number, channel: NativeChannel): void => {
    this.clients.add(new Connection(id, pid, channel, this.host));
    debug('server %s: client %d (pid %d) connects', this.name, id, pid);
  };

  /** Its rings broke: the client is dropped (one that broke the protocol is told so). */
  private connectionFailed(c: Connection, err: unknown): void {
    const reason = nativeReason(err);
    const error = fromNativeError(err);
    const what =
      reason === 'TRUNCATED'
        ? 'lost pages of its connection segment'
        : error.code === 'ERR_PROTOCOL'
          ? 'broke the protocol'
          : 'failed';
    this.dropClient(c, error, what, reason !== 'TRUNCATED');
  }

  /** Ends `c` for `cause`, told on clientErrors$ (else a warning) and by its `closed`. */
  private dropClient(c: Connection, cause: ShmChannelError, what: string, tellClient = true): void {
    if (!this.clients.has(c)) return;
    const error = createError(cause.code, `client ${c.id} (pid ${c.pid}) of ${this.name} ${what}: ${cause.message}`, {
      cause,
    });
    debug('server %s drops client %d: %s', this.name, c.id, error.message);
    // The client learns it was dropped (ERR_PROTOCOL on its side), not that its server left.
    if (tellClient) c.flagDropped();
    // Why first, then that it is gone (closed, state$).
    this.streams.clientDropped(this.name, error, 'a client');
    c.drop(error);
  }

  private connectionEnded(c: Connection, native: NativeChannel): void {
    this.clients.delete(c);
    try {
      native.close();
    } catch (err) {
      debug('server %s: client %d not disconnected: %s', this.name, c.id, (err as Error).message);
    }
    if (this.closed || this.streams.state !== 'connected') return;
    if (this.clients.anySaidHello()) return;
    this.streams.enter('peer-lost');
    this.streams.enter('open');
  }

  // ---- helpers ----

  /** The one client connected, for a server-wide `what`: see ClientSet.sole(). */
  private soleClient(what: string, method: string): Connection {
    this.checkSendable(0);
    return this.clients.sole(what, method);
  }

  /** Throws why nothing may be sent now: closed, not open, or a message too large for any client. */
  private checkSendable(length: number): void {
    if (this.closed) throw this.closedError();
    if (this.native === undefined) {
      throw createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is not open: call open() first`);
    }
    if (length > this.maxMessageSize) {
      throw createError(
        'ERR_MESSAGE_TOO_LARGE',
        `message of ${length} bytes exceeds maxMessageSize (${this.maxMessageSize}) of ${this.name}`,
      );
    }
  }

  /** Something failed for the whole server (its directory): report it on the streams and close. */
  private fail(err: unknown): void {
    const error = err instanceof ShmChannelError ? err : fromNativeError(err);
    debug('server %s failed: %s', this.name, error.message);
    this.streams.fail(error);
    this.closing ??= this.shutdown(false);
  }

  private closedError(): ShmChannelError {
    return createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is closed`);
  }
}
