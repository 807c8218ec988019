// A server's view of one of its clients (a server of many: maxClients > 1): rings, queues,
// pending requests and bounds of its own, so that a client that stops reading, floods, breaks
// the protocol or dies is its own problem and nobody else's.
import type { Buffer } from 'node:buffer';

import type { Observable } from 'rxjs';

import { Broadcast } from './broadcast';
import {
  checkRequestTimeout,
  DEFAULT_CLOSE_TIMEOUT,
  type ChannelOptions,
  type RequestOptions,
} from './channel-options';
import { toBuffer, toBuffers, type Data } from './data';
import { createError, type ShmChannelError } from './errors';
import { release, type LoanedBuffer, type Loans } from './loans';
import type { NotificationBatch } from './notification-batch';
import type { IncomingRequest } from './incoming-request';
import { SegmentState, type NativeChannel } from './native';
import { PeerLink } from './peer-link';
import { RequestTable } from './request-table';

/** @internal What a Connection needs of its server. */
export interface ConnectionHost {
  readonly name: string;
  debug(message: string): void;
  readonly options: Readonly<ChannelOptions>;
  /** The server is closing: only answers and cancels still go out. */
  closing(): boolean;
  /** Whether the server's own streams want notifications each, in batches, or requests. */
  notificationsObserved(): boolean;
  notification(data: Buffer): void;
  batchesObserved(): boolean;
  notificationBatch(batch: NotificationBatch): void;
  requestsObserved(): boolean;
  request(request: IncomingRequest): void;
  /** The client said hello: it is connected. */
  hello(connection: Connection): void;
  /** A read, a write or a loan of this client's rings failed: the server drops or ends it. */
  failed(connection: Connection, err: unknown): void;
  /** Something went out: the answer may follow within microseconds. */
  sent(): void;
  /** This connection ended (`reason` as `closed` resolves): the server disconnects it. */
  ended(connection: Connection, native: NativeChannel): void;
}

/**
 * One client of a server of many (`maxClients` > 1), as `server.clients$` emits it once the
 * client said hello. What a Channel does for its one peer, this does for one client: notify(),
 * request() and the rest reach that client alone, with backpressure and bounds of its own.
 *
 * ## Example
 * ```ts
 * server.clients$.subscribe((client) => {
 *   client.notify(`welcome, ${client.pid}`);
 *   client.closed.then((why) => console.log(`client ${client.id} left`, why?.code ?? 'saying goodbye'));
 * });
 * ```
 */
export class Connection {
  /** Resolves once the connection ended: undefined when the client closed (said goodbye); else why it ended. */
  readonly closed: Promise<ShmChannelError | undefined>;
  /** Every notification this client sends while subscribed. Completes when the connection ends. */
  readonly notifications$: Observable<Buffer>;

  private readonly link: PeerLink;
  private readonly requests: RequestTable;
  private readonly notifications = new Broadcast<Buffer>();
  private resolveClosed!: (reason: ShmChannelError | undefined) => void;
  private phase: 'open' | 'closing' | 'ended' = 'open';
  private closingDone: Promise<void> | undefined;
  private helloSeen = false;
  private goodbyeSeen = false;
  /** Once ended: what a send, a loan or drained() is told. */
  private endedError: ShmChannelError | undefined;

  /** @internal Made by the server when it accepts a client. */
  constructor(
    /** Unique among the connections of this server for its whole life. */
    readonly id: number,
    /** The client's process id. */
    readonly pid: number,
    private readonly native: NativeChannel,
    private readonly host: ConnectionHost,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.notifications$ = this.notifications.observable;
    const name = host.name;
    this.requests = new RequestTable({
      name,
      checkCanRequest: (payload) => {
        this.checkOpen();
        this.link.checkCanRequest(payload);
      },
      sendRequest: (id, payload) => this.link.sendRequest(id, payload),
      sendCancel: (id) => this.link.sendCancel(id),
    });
    this.link = new PeerLink(native, native.info(), host.options, 'server', name, this.requests, {
      notificationsObserved: () => this.notifications.observed || host.notificationsObserved(),
      notification: (data) => {
        this.notifications.next(data);
        host.notification(data);
      },
      batchesObserved: () => host.batchesObserved(),
      notificationBatch: (batch) => host.notificationBatch(batch),
      requestsObserved: () => host.requestsObserved(),
      request: (request) => host.request(request),
      hello: () => {
        if (this.helloSeen || this.phase === 'ended') return;
        this.helloSeen = true;
        host.hello(this);
      },
      bye: () => {
        host.debug(`peer said goodbye (client ${id}, pid ${pid})`);
        this.goodbyeSeen = true;
        // Nothing it was asked will be answered now; the server ends it once it left.
        this.requests.endAll(() => this.goneError('said goodbye'));
      },
      failed: (err) => host.failed(this, err),
      sent: () => host.sent(),
      closing: () => this.phase !== 'open' || host.closing(),
      checkPeerAttached: () => undefined,
      client: this,
    });
  }

  /** True until the connection ends (the client leaves, dies or is dropped, or the server ends it). */
  get isOpen(): boolean {
    return this.phase === 'open';
  }

  /** Bytes waiting in this client's outgoing queue for room in its ring. */
  get queuedBytes(): number {
    return this.phase === 'ended' ? 0 : this.link.queuedBytes;
  }

  /** Channel.notify(), to this client alone. */
  notify(data: Data): boolean {
    const payload = toBuffer(data, 'notification data');
    this.checkOpen();
    return this.link.notify(payload);
  }

  /** Channel.notifyMany(), to this client alone. */
  notifyMany(messages: Iterable<Data>): boolean {
    const payloads = toBuffers(messages);
    this.checkOpen();
    return this.link.notifyMany(payloads);
  }

  /**
   * Channel.request(), to this client alone: cold, one request per subscription; ERR_PEER_LOST
   * if the client leaves first.
   */
  request(data: Data, options: RequestOptions = {}): Observable<Buffer> {
    const payload = toBuffer(data, 'request data');
    const timeout = checkRequestTimeout(options.timeout ?? this.host.options.requestTimeout);
    return this.requests.request(payload, timeout);
  }

  /**
   * Resolves once nothing waits in this client's outgoing queue; rejects with why it never
   * will (ERR_PEER_LOST, ERR_QUEUE_FULL, ERR_PROTOCOL, ERR_CHANNEL_CLOSED) if the connection
   * ends first.
   */
  drained(): Promise<void> {
    try {
      this.checkOpen();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return this.link.drained();
  }

  /** Channel.loan(), out of this client's pool (each client's connection has a pool of poolSize). */
  loan(size: number): LoanedBuffer {
    this.checkOpen();
    return this.link.loans.loan(size);
  }

  /** Channel.waitForLoan(), out of this client's pool. */
  waitForLoan(size: number): Promise<LoanedBuffer> {
    try {
      this.checkOpen();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    return this.link.loans.waitForLoan(size);
  }

  /** Channel.release(). */
  release(buffer: Buffer): void {
    release(buffer);
  }

  /**
   * The server ends this client: what is queued goes out while it reads (closeTimeout at most),
   * then a goodbye, and its connection is gone (the client sees its server close). Requests to
   * it fail and its requests are cancelled, as at the server's close(); `closed` resolves with
   * ERR_CHANNEL_CLOSED. Idempotent.
   */
  close(): Promise<void> {
    this.closingDone ??= this.shutdown();
    return this.closingDone;
  }

  private async shutdown(): Promise<void> {
    if (this.phase !== 'open') return;
    this.phase = 'closing';
    const deadline = Date.now() + (this.host.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT);
    await this.link.drainBeforeClose(deadline, () => this.phase === 'closing' && this.peerReads());
    if (this.phase !== 'closing') return;
    this.link.sayGoodbye(this.peerReads());
    this.end(this.closedError(), this.closedError());
  }

  // ---- what the server does with it ----

  /** @internal It said hello (clients$ has it). */
  get saidHello(): boolean {
    return this.helloSeen;
  }

  /** @internal Requests to it can be answered: it said hello, or attached and its hello is on its way. */
  get attached(): boolean {
    if (this.phase !== 'open') return false;
    if (this.helloSeen) return true;
    try {
      return (this.native.info().state & SegmentState.CLIENT_ATTACHED) !== 0;
    } catch {
      return false;
    }
  }

  /** @internal Whether `loans` is this connection's pool (a broadcast sends its loan by reference last). */
  lendsFrom(loans: Loans | undefined): boolean {
    return loans !== undefined && this.link.loans === loans;
  }

  /** @internal Reads what came and writes what waits (PUMP_* bits); throws what broke. */
  pump(): number {
    return this.phase === 'ended' ? 0 : this.link.pump();
  }

  /** @internal The server's broadcast: notify() without the argument checks. */
  broadcast(payload: Buffer): boolean {
    return this.link.notify(payload);
  }

  /** @internal The server's broadcast: notifyMany() without the argument checks. */
  broadcastMany(payloads: readonly Buffer[]): boolean {
    return this.link.notifyMany(payloads);
  }

  /** @internal The server's close(): wait until this client read what is queued, or `deadline`. */
  drainBeforeClose(deadline: number): Promise<void> {
    return this.link.drainBeforeClose(deadline, () => this.phase !== 'ended' && this.peerReads());
  }

  /** @internal The server closes: a goodbye, then the end (ERR_CHANNEL_CLOSED). */
  sayGoodbyeAndEnd(): void {
    if (this.phase === 'ended') return;
    this.link.sayGoodbye(this.peerReads());
    this.end(this.closedError(), this.closedError());
  }

  /** @internal The process exits: writes what it can by `deadline` (performance.now()); the server then closes every connection. */
  closeAtExit(deadline: number): void {
    if (this.phase === 'ended') return;
    this.link.closeAtExit(deadline, () => undefined);
    this.finish(this.closedError());
    this.resolveClosed(this.closedError());
  }

  /** @internal The client left (left()): it closed on purpose (said goodbye, or flagged its close), or died. */
  left(): void {
    if (this.phase === 'ended') return;
    let closedOnPurpose = this.goodbyeSeen;
    try {
      closedOnPurpose ||= (this.native.info().state & SegmentState.CLIENT_CLOSED) !== 0;
    } catch {
      // A segment that lost pages: the client is gone either way.
    }
    const lost = this.goneError(closedOnPurpose ? 'closed' : 'died or left without a goodbye');
    this.end(closedOnPurpose ? undefined : lost, lost);
  }

  /** @internal Flags the client dropped: it stops writing, and learns why its connection ends. */
  flagDropped(): void {
    try {
      this.native.dropClient();
    } catch (err) {
      // A segment that lost pages, or a connection already ended: the disconnect still tells it.
      this.host.debug(`client ${this.id} not flagged as dropped: ${(err as Error).message}`);
    }
  }

  /** @internal The server drops it: `error` says why (ERR_PROTOCOL, ERR_QUEUE_FULL, a lost segment). */
  drop(error: ShmChannelError): void {
    if (this.phase === 'ended') return;
    this.link.drop(error);
    this.end(error, error);
  }

  /**
   * Ends the connection: pending requests fail with `requestError`, those being handled are
   * cancelled, queued output and drained() waiters learn it, notifications$ completes, `closed`
   * resolves with `reason`, and the server disconnects it.
   */
  private end(reason: ShmChannelError | undefined, requestError: ShmChannelError): void {
    this.finish(requestError);
    this.resolveClosed(reason);
    this.host.ended(this, this.native);
  }

  private finish(requestError: ShmChannelError): void {
    if (this.phase === 'ended') return;
    this.phase = 'ended';
    this.endedError = requestError.code === 'ERR_CHANNEL_CLOSED' ? requestError : this.goneError('is gone');
    this.link.detach(requestError);
    this.requests.endAll(() => requestError);
    this.notifications.complete();
  }

  private peerReads(): boolean {
    return !this.goodbyeSeen && this.link.peerReadsNow();
  }

  private checkOpen(): void {
    if (this.phase === 'open') return;
    throw this.endedError ?? this.closedError();
  }

  private goneError(what: string): ShmChannelError {
    return createError('ERR_PEER_LOST', `client ${this.id} (pid ${this.pid}) of ${this.host.name} ${what}`);
  }

  private closedError(): ShmChannelError {
    return createError('ERR_CHANNEL_CLOSED', `the connection of client ${this.id} of ${this.host.name} is closed`);
  }
}
