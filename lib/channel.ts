import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { debuglog } from 'node:util';
import { markAsUntransferable } from 'node:worker_threads';

import { BehaviorSubject, Observable, type Subscriber } from 'rxjs';

import { Broadcast } from './broadcast';
import { toBuffer, type Data } from './data';
import { createError, fromNativeError, nativeReason, ShmChannelError } from './errors';
import { IncomingRequest, type ResponseSink } from './incoming-request';
import { closeAtExit, forgetAtExit, type ClosableAtExit } from './exit-cleanup';
import { binding } from './load-addon';
import { PeerState, SegmentState, WakeEvent, type NativeChannel } from './native';
import { OutboundQueue } from './outbound-queue';
import { allocateMessage, channelIdle } from './recycled-memory';
import {
  decodeRemoteError,
  fitRemoteError,
  EMPTY,
  FRAME_HEADER_SIZE,
  FrameKind,
  frameSize,
  MessageAssembler,
  headerWords,
  protocolError,
  viewOf,
} from './protocol';
import { validateName } from './shared-memory';

const debug = debuglog('shmchannel');

export const Mode = { SERVER: 'server', CLIENT: 'client' } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];

/**
 * 'idle' before open(); a server is 'open' until a client says hello, then 'connected';
 * 'peer-lost' when the peer leaves or dies, or a server drops a client that broke the protocol (a
 * server then returns to 'open' once the client left); 'closed' at the end.
 */
export type ChannelState = 'idle' | 'open' | 'connected' | 'peer-lost' | 'closed';

export interface ChannelOptions {
  /** Server: bytes per direction, a power of two from 4 KiB to 1 GiB. Default 1 MiB. */
  ringCapacity?: number;
  /**
   * Server: the largest message either side may send, 1 B to 1 GiB. Default 64 MiB. Client:
   * the largest it accepts; open() fails with ERR_INCOMPATIBLE_SEGMENT if the server allows
   * more. Default: the server's, whatever it is.
   */
  maxMessageSize?: number;
  /** Server: file mode of the segment. Default 0o600 (only this user). */
  permissions?: number;
  /** Client: how long open() waits for the server to appear, in ms. Default 5000. */
  connectTimeout?: number;
  /** Bound of the outgoing queue used while the ring is full. Default max(64 MiB, maxMessageSize + ringCapacity). */
  maxQueuedBytes?: number;
  /** Default timeout of every request(), in ms. Default: none. */
  requestTimeout?: number;
  /**
   * How long close() waits for queued outgoing messages to reach the ring while the peer
   * reads, in ms. Default 2000. What still cannot be sent then is reported with a process
   * warning (code SHMCHANNEL_UNSENT), never dropped silently.
   */
  closeTimeout?: number;
  /**
   * After traffic, keep reading the ring from the event loop for this many microseconds
   * before sleeping on the futex doorbell. Replies and bursts arriving within the window cost
   * no system call and no thread wake-up, which is what makes round trips fast; the price is
   * CPU while the window is open. The first 20 µs after each message are a tight loop that
   * holds the event loop (timers and I/O wait that long at most). 0 sleeps at once (lowest
   * CPU). Default 200.
   */
  pollWindowUs?: number;
}

export interface RequestOptions {
  /** Fail with ERR_TIMEOUT (and cancel remotely) if the response has not ended by then, in ms. */
  timeout?: number;
}

const DEFAULT_RING_CAPACITY = 1 << 20;
const DEFAULT_MAX_MESSAGE_SIZE = 64 << 20;
const DEFAULT_CONNECT_TIMEOUT = 5000;
const DEFAULT_POLL_WINDOW_US = 200;
const DEFAULT_CLOSE_TIMEOUT = 2000;
const MIN_QUEUE_BOUND = 64 << 20;
const CONNECT_RETRY_MS = 25;
// Bytes drained per event-loop turn before yielding to other work (timers, I/O).
const DRAIN_BUDGET_RINGS = 4;
// Messages from this size on go from the ring straight into their own Buffer: read() only
// announces them, and readContinuation copies them.
const DIRECT_READ_FROM = 64 * 1024;
// Received messages up to this size share slabs of up to SLAB_BYTES (see copySmallFrames).
const SLAB_MAX_MESSAGE = 4096;
const SLAB_BYTES = 32 * 1024;
// After news (a read or a send), the peer's answer usually follows within microseconds: the poll
// looks again at once, in a loop with neither an event-loop turn nor a system call, for this
// long. An event-loop turn is an epoll_wait, ~1.5 us with page-table isolation (PTI) on a VM;
// looking once per turn instead made the round trip there 18 us against 10. Timers and I/O
// wait at most this long for their turn.
const SPIN_AFTER_NEWS_MS = 0.02;
// Once that has passed without news, the poll looks once per event-loop turn and gives its core
// away at each look (sched_yield): when both peers poll on one core (one core, or a third thread
// took the other: a GC or compiler thread, another process), looking on would make each round
// trip wait for the scheduler to preempt us (~420 us here) instead of a switch.
//
// A yield that took this much longer than the fastest one seen let another thread run: the core
// is shared, and the poll skips its spin (the peer may be the one waiting) until a yield finds
// nobody waiting. The fastest yield is the system call alone (1.5 us on a VM with PTI, where a
// fixed 1 us bound took every yield for a switch); a switch to another thread and back costs
// more than this on top, before that thread does any work.
const YIELD_GAVE_CORE_MS = 0.002;
// A look that came this long after the previous one of a spin was preempted: the core is shared.
const SPIN_PREEMPTED_MS = 0.05;
let fastestYieldMs = Infinity;
// The exit path waits for the peer to free ring space by sleeping on this (Atomics.wait), in
// steps of this many ms: an exiting process has no event loop to be woken through.
const EXIT_SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));
const EXIT_LOOK_EVERY_MS = 1;

/** Gives the core to another thread if one waits for it; true if one did. */
function yieldCore(): boolean {
  const ms = binding.yieldProcessor();
  if (ms < fastestYieldMs) fastestYieldMs = ms;
  return ms > fastestYieldMs + YIELD_GAVE_CORE_MS;
}

// What pump() and drainInbound() did, as bits: no object per look at the ring.
const PUMP_READ = 1;
const PUMP_MORE = 2;
const PUMP_SENT = 4;
// The channel ended meanwhile.
const PUMP_ENDED = 8;

interface PendingRequest {
  subscriber: Subscriber<Buffer>;
}

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
export class Channel implements ResponseSink, ClosableAtExit {
  readonly name: string;
  readonly mode: Mode;

  private readonly options: Readonly<ChannelOptions>;
  private native: NativeChannel | undefined;
  private outbound: OutboundQueue | undefined;
  private readonly assembler = new MessageAssembler(allocateMessage);
  /** The peer's goodbye was read: it is the last frame a peer sends (until the next client). */
  private peerSaidBye = false;
  private readBuffer: Buffer = EMPTY;
  private readWords: Uint32Array = new Uint32Array(0);
  private maxMessageSize = 0;
  private opening = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private failure: ShmChannelError | undefined;
  /** Server: its client broke the protocol and was told to leave; nothing is read until it has. */
  private droppingClient = false;
  private referenced = true;
  private readonly pollWindowMs: number;
  private polling = false;
  /** When the poll last read or sent; it stops pollWindowMs later. */
  private pollActiveAt = 0;
  /** The last yield of the poll let another thread run, or its spin was preempted. */
  private pollCoreShared = false;

  private readonly stateSubject = new BehaviorSubject<ChannelState>('idle');
  private readonly notificationsBroadcast = new Broadcast<Buffer>();
  private readonly requestsBroadcast = new Broadcast<IncomingRequest>();
  private readonly clientErrorsBroadcast = new Broadcast<ShmChannelError>();
  private readonly pendingRequests = new Map<number, PendingRequest>();
  private readonly incomingRequests = new Map<number, IncomingRequest>();
  private lastRequestId = 0;
  private drainWaiters: Array<{ resolve: () => void; reject: (err: ShmChannelError) => void }> = [];

  /** Lifecycle of this end: see ChannelState. Replays the current state to new subscribers. */
  readonly state$: Observable<ChannelState> = new Observable<ChannelState>((subscriber) => {
    // A completed BehaviorSubject replays nothing; a late subscriber still learns 'closed'.
    if (this.stateSubject.value === 'closed') {
      subscriber.next('closed');
      subscriber.complete();
      return undefined;
    }
    return this.stateSubject.subscribe(subscriber);
  });
  /** Every notification the peer sends while subscribed. Completes on close. */
  readonly notifications$: Observable<Buffer> = this.notificationsBroadcast.observable;
  /** Every request the peer sends. With no subscriber, the peer gets ERR_NO_HANDLER. */
  readonly requests$: Observable<IncomingRequest> = this.requestsBroadcast.observable;
  /**
   * Server: the ERR_PROTOCOL of each client that broke the protocol. Such a client is dropped
   * (requests to it fail with the same error, its requests are cancelled, it is told to leave)
   * and the server goes on with the next one, as a `net.Server` outlives a bad connection; its
   * streams do not end.
   * Never emits on a client. Completes on close.
   */
  readonly clientErrors$: Observable<ShmChannelError> = this.clientErrorsBroadcast.observable;

  constructor(name: string, mode: Mode, options: ChannelOptions = {}) {
    validateName(name);
    if (mode !== 'server' && mode !== 'client') {
      throw createError('ERR_INVALID_ARG_VALUE', `mode must be 'server' or 'client', got ${String(mode)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw createError('ERR_INVALID_ARG_TYPE', 'options must be an object');
    }
    checkOptions(options);
    this.name = name;
    this.mode = mode;
    this.options = { ...options };
    this.pollWindowMs = (options.pollWindowUs ?? DEFAULT_POLL_WINDOW_US) / 1000;
  }

  get isOpen(): boolean {
    return this.native !== undefined;
  }

  get state(): ChannelState {
    return this.stateSubject.value;
  }

  /** Creates (server) or attaches to (client) the segment. */
  async open(): Promise<void> {
    if (this.closed) throw this.closedError();
    if (this.native !== undefined || this.opening) {
      throw createError('ERR_ALREADY_OPEN', `channel ${this.name} is already open`);
    }
    this.opening = true;
    try {
      this.native = this.mode === 'server' ? this.createSegment() : await this.attachSegment();
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
    const acceptable = this.options.maxMessageSize;
    if (this.mode === 'client' && acceptable !== undefined && info.maxMessageSize > acceptable) {
      // Refused before any traffic: the server's limit is what the peer may make us allocate.
      this.native.close();
      this.native = undefined;
      throw createError(
        'ERR_INCOMPATIBLE_SEGMENT',
        `server ${this.name} allows messages of up to ${info.maxMessageSize} bytes, ` +
          `more than this client's maxMessageSize (${acceptable})`,
      );
    }
    this.maxMessageSize = info.maxMessageSize;
    this.readBuffer = Buffer.allocUnsafeSlow(info.ringCapacity);
    this.readWords = headerWords(this.readBuffer);
    const queueBound =
      this.options.maxQueuedBytes ?? Math.max(MIN_QUEUE_BOUND, info.maxMessageSize + info.ringCapacity);
    this.outbound = new OutboundQueue(
      this.native,
      info.ringCapacity,
      info.maxFramePayload,
      Math.max(queueBound, info.maxMessageSize),
      (err) => this.fail(err),
    );
    if (!this.referenced) this.native.unref();
    closeAtExit(this);
    debug('%s %s open: ring %d B, max message %d B', this.mode, this.name, info.ringCapacity, info.maxMessageSize);
    if (this.mode === 'client') {
      this.outbound.send(FrameKind.HELLO, 0, EMPTY, true);
      this.stateSubject.next('connected');
    } else {
      this.stateSubject.next('open');
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
    if (drain) await this.drainOutbound();
    const native = this.native;
    const outbound = this.outbound;
    if (native !== undefined && outbound !== undefined) {
      try {
        outbound.flush();
        outbound.send(FrameKind.BYE, 0, EMPTY, true);
        outbound.flush();
      } catch (err) {
        debug('%s %s: goodbye not sent: %s', this.mode, this.name, (err as Error).message);
      }
      // The goodbye itself may wait in the queue: the peer then learns from the state flag.
      const unsent = outbound.bytesQueued;
      if (unsent > 0 && this.peerMayRead()) {
        process.emitWarning(
          `shmchannel: ${this.mode} ${this.name} closed with ${unsent} bytes its peer did not read within closeTimeout`,
          { code: 'SHMCHANNEL_UNSENT' },
        );
      }
    }
    this.native = undefined;
    if (outbound?.isEmpty === true) this.settleDrainWaiters();
    outbound?.clear();
    this.settleDrainWaiters(
      this.failure ?? (this.state === 'peer-lost' ? peerLostError(this.name) : this.closedError()),
    );
    native?.close();
    // A message cut off by the close would otherwise hold its buffer as long as this object.
    this.assembler.reset();
    channelIdle();
    forgetAtExit(this);
    this.endRequests(() => this.closedError());
    this.notificationsBroadcast.complete();
    this.requestsBroadcast.complete();
    this.clientErrorsBroadcast.complete();
    this.stateSubject.next('closed');
    this.stateSubject.complete();
  }

  /** Waits until the outgoing queue is empty, the peer is gone, or closeTimeout passes. */
  private async drainOutbound(): Promise<void> {
    const deadline = Date.now() + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT);
    while (
      this.outbound !== undefined &&
      !this.outbound.isEmpty &&
      this.failure === undefined &&
      this.peerMayRead() &&
      Date.now() < deadline
    ) {
      // The waker flushes when the peer frees space; this only waits for that to happen.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** Whether anyone may still read what we send (not after the peer left). */
  private peerMayRead(): boolean {
    const state = this.stateSubject.value;
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
    // Open first: before open() the size limit is not known yet.
    this.writable();
    return this.send(FrameKind.NOTIFY, 0, this.checkSize(payload));
  }

  /**
   * Resolves once nothing waits in the outgoing queue: every message sent so far is in the
   * ring, for the peer to read. Rejects with ERR_PEER_LOST if the peer leaves first (what was
   * queued for it is gone), ERR_PROTOCOL if the channel fails or (server) drops its client
   * first, or ERR_CHANNEL_CLOSED if the channel closes or is not open.
   */
  drained(): Promise<void> {
    let outbound: OutboundQueue;
    try {
      outbound = this.writable();
    } catch (err) {
      return Promise.reject(err as ShmChannelError);
    }
    try {
      outbound.flush();
    } catch (err) {
      this.fail(err);
      return Promise.reject(this.failure ?? fromNativeError(err));
    }
    if (outbound.isEmpty) return Promise.resolve();
    return new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
  }

  /** Bytes waiting in the outgoing queue for room in the ring (0 when the peer keeps up). */
  get queuedBytes(): number {
    return this.outbound?.bytesQueued ?? 0;
  }

  /**
   * Sends a request when subscribed and emits every value of its response. Cold: each
   * subscription is one request; unsubscribing cancels it at the handler. Only arguments of
   * the wrong type or value throw here; whatever depends on the channel's state (closed, not
   * open, no peer, queue full, message too large) reaches the subscriber as an error.
   */
  request(data: Data, options: RequestOptions = {}): Observable<Buffer> {
    const payload = toBuffer(data, 'request data');
    const timeout = options.timeout ?? this.options.requestTimeout;
    if (timeout !== undefined && typeof timeout !== 'number') {
      throw createError('ERR_INVALID_ARG_TYPE', `timeout must be a number of ms, got ${typeof timeout}`);
    }
    if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
      throw createError('ERR_INVALID_ARG_VALUE', `timeout must be a positive number of ms, got ${String(timeout)}`);
    }
    return new Observable<Buffer>((subscriber) => {
      let id: number;
      try {
        this.writable();
        this.checkSize(payload);
        this.checkPeerAttached();
        id = this.allocateRequestId();
        this.pendingRequests.set(id, { subscriber });
        try {
          this.send(FrameKind.REQUEST, id, payload);
        } catch (err) {
          this.pendingRequests.delete(id);
          throw err;
        }
      } catch (err) {
        subscriber.error(err);
        return undefined;
      }
      const entry = this.pendingRequests.get(id);
      const timer =
        timeout === undefined
          ? undefined
          : setTimeout(() => {
              subscriber.error(
                createError('ERR_TIMEOUT', `request ${id} on ${this.name} timed out after ${timeout} ms`),
              );
            }, timeout);
      return () => {
        if (timer !== undefined) clearTimeout(timer);
        // Still pending here means the caller gave up before the response ended: tell the handler.
        if (entry !== undefined && this.pendingRequests.get(id) === entry) {
          this.pendingRequests.delete(id);
          if (this.outbound !== undefined) {
            try {
              this.send(FrameKind.CANCEL, id, EMPTY, true, true);
            } catch (err) {
              // Teardown must not throw; a failed write has already failed the channel.
              debug('%s %s: cancel of %d not sent: %s', this.mode, this.name, id, (err as Error).message);
            }
          }
        }
      };
    });
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

  /** @internal ResponseSink: frames of the responses this end sends. */
  sendResponse(kind: number, id: number, data: Buffer): void {
    if (kind === FrameKind.RESPONSE) this.checkSize(data);
    // An error text longer than the peer accepts must still end the request.
    const payload = kind === FrameKind.ERROR ? fitRemoteError(data, this.maxMessageSize) : data;
    // Answers to requests already received still go out while close() delivers the queue.
    this.send(kind, id, payload, kind !== FrameKind.RESPONSE, true);
  }

  /**
   * @internal ClosableAtExit: the process is ending. The exit path cannot await, so this
   * writes what is queued while the peer reads, blocking for at most closeTimeout, releases
   * the segment, and warns (SHMCHANNEL_UNSENT) of what is left.
   */
  closeAtExit(): void {
    const native = this.native;
    if (native === undefined) return;
    const outbound = this.outbound;
    const unsent = outbound === undefined ? 0 : this.deliverBeforeExit(native, outbound);
    const why = unsent > 0 && this.peerReadsNow(native) ? 'did not read within closeTimeout' : 'was gone';
    this.native = undefined;
    native.close();
    if (unsent > 0) {
      // process.emitWarning() reports on the next tick, which an exiting process never reaches.
      const warning = Object.assign(
        new Error(
          `shmchannel: ${this.mode} ${this.name}: the process exited with ${unsent} bytes unsent: the peer ${why}`,
        ),
        { name: 'Warning', code: 'SHMCHANNEL_UNSENT' },
      );
      process.emit('warning', warning);
    }
  }

  /** Writes the queue into the ring while the peer reads, for at most closeTimeout: the bytes left. */
  private deliverBeforeExit(native: NativeChannel, outbound: OutboundQueue): number {
    const deadline = performance.now() + (this.options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT);
    try {
      for (;;) {
        outbound.flush();
        if (outbound.isEmpty || performance.now() >= deadline || !this.peerReadsNow(native)) break;
        // The peer frees space as it reads; nothing here can wake us when it does.
        Atomics.wait(EXIT_SLEEP_CELL, 0, 0, EXIT_LOOK_EVERY_MS);
      }
    } catch (err) {
      debug('%s %s: queue not written at exit: %s', this.mode, this.name, (err as Error).message);
    }
    return outbound.isEmpty ? 0 : outbound.bytesQueued;
  }

  /** Whether the peer still reads what we write, asked of the segment itself (no event loop at exit). */
  private peerReadsNow(native: NativeChannel): boolean {
    if (this.failure !== undefined || this.droppingClient) return false;
    const state = native.info().state;
    if (this.mode === 'client') {
      if ((state & (SegmentState.SERVER_CLOSED | SegmentState.CLIENT_DROPPED)) !== 0) return false;
    } else if ((state & SegmentState.CLIENT_ATTACHED) === 0 || (state & SegmentState.CLIENT_CLOSED) !== 0) {
      return false;
    }
    return native.peerState() !== PeerState.GONE;
  }

  /** @internal ResponseSink */
  finished(id: number): void {
    this.incomingRequests.delete(id);
  }

  // ---- opening ----

  private createSegment(): NativeChannel {
    const o = this.options;
    try {
      return new binding.Channel(
        0,
        this.name,
        o.ringCapacity ?? DEFAULT_RING_CAPACITY,
        o.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
        o.permissions ?? 0o600,
        (events) => this.onWake(events),
      );
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  private async attachSegment(): Promise<NativeChannel> {
    const timeout = this.options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
    const deadline = Date.now() + timeout;
    for (;;) {
      try {
        return new binding.Channel(1, this.name, 0, 0, 0, (events) => this.onWake(events));
      } catch (err) {
        const reason = nativeReason(err);
        // The server may not exist yet, or be between creating and initialising the segment.
        const retry = reason === 'NOT_FOUND' || reason === 'NOT_READY';
        if (!retry || timeout === 0) throw fromNativeError(err);
        if (this.closed) throw this.closedError();
        if (Date.now() >= deadline) {
          throw createError('ERR_TIMEOUT', `no server on ${this.name} within ${timeout} ms`, {
            cause: fromNativeError(err),
          });
        }
        await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS));
      }
    }
  }

  // ---- the wake-up path ----

  /**
   * The waker thread found something (data, space, a doorbell, a lost peer). It stays
   * disarmed until we arm() it again; while we poll, the poll loop owns that decision.
   */
  private onWake(events: number): void {
    const r = this.pump(events);
    if ((r & PUMP_ENDED) !== 0 || this.polling) return;
    if ((r & PUMP_READ) !== 0 && this.pollWindowMs > 0) {
      this.startPolling();
    } else if ((r & PUMP_MORE) !== 0) {
      // The ring still has data but we yield to the event loop; the waker stays disarmed.
      setImmediate(() => this.onWake(WakeEvent.ACTIVITY));
    } else {
      this.armWaker();
    }
  }

  /**
   * Hands the ring back to the waker. Not once closing after the peer left: nothing more can
   * come, and a peer's leave flag would end each of its waits at once until the close ends.
   */
  private armWaker(): void {
    if (!(this.closed && this.stateSubject.value === 'peer-lost')) this.native?.arm();
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
      if (this.droppingClient) {
        // Reads nothing (the native reader stays failed) but reports a segment that lost pages.
        this.native.read(this.readBuffer, DIRECT_READ_FROM);
      } else {
        result = this.drainInbound();
        const queuedBefore = this.outbound?.bytesQueued ?? 0;
        this.outbound?.flush();
        if (this.outbound?.isEmpty === true) this.settleDrainWaiters();
        if ((this.outbound?.bytesQueued ?? 0) < queuedBefore) result |= PUMP_SENT;
      }
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

  private startPolling(): void {
    if (this.polling || this.pollWindowMs === 0 || this.native === undefined) return;
    this.polling = true;
    this.pollActiveAt = performance.now();
    setImmediate(this.pollTick);
  }

  // Looks at the ring until the window passes with nothing to read: in a tight loop for a while
  // after news, then once per event-loop turn.
  private readonly pollTick = (): void => {
    let r = this.pump(0);
    let now = performance.now();
    if (!this.pollCoreShared) {
      const spinUntil = this.pollActiveAt + Math.min(SPIN_AFTER_NEWS_MS, this.pollWindowMs);
      while (r === 0 && now < spinUntil) {
        r = this.pump(0);
        const before = now;
        now = performance.now();
        if (now - before > SPIN_PREEMPTED_MS) this.pollCoreShared = true;
      }
    }
    if ((r & PUMP_ENDED) !== 0) {
      this.polling = false;
      return;
    }
    if ((r & (PUMP_READ | PUMP_SENT)) !== 0) this.pollActiveAt = now;
    else if (this.pollCoreShared || now - this.pollActiveAt > SPIN_AFTER_NEWS_MS) {
      this.pollCoreShared = yieldCore();
    }
    // A queue waiting for a peer that does not read is no reason to spin: after the window the
    // waker takes over, and it reports both freed space and a lost peer.
    if ((r & PUMP_MORE) !== 0 || now - this.pollActiveAt < this.pollWindowMs) {
      setImmediate(this.pollTick);
    } else {
      this.polling = false;
      this.armWaker();
    }
  };

  /** Reads and dispatches frames: PUMP_READ if it read any, PUMP_MORE if it stopped for the budget with data left. */
  private drainInbound(): number {
    const batch = this.readBuffer;
    const words = this.readWords;
    let budget = batch.length * DRAIN_BUDGET_RINGS;
    let read = 0;
    for (let native = this.native; native !== undefined && this.reading; native = this.native) {
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
          // As thrown: fail() tells a lost segment from a bad peer by the native reason.
          throw err;
        }
        if (got === 0) return read;
        read = PUMP_READ;
        const message = this.assembler.filledIn(got);
        if (message !== undefined) {
          this.dispatch(this.assembler.kind, this.assembler.id, message);
          if (!this.reading) return read;
        }
        budget -= got;
        if (budget <= 0) return read | PUMP_MORE;
        continue;
      }
      const n = native.read(batch, DIRECT_READ_FROM);
      if (n === 0) return read;
      read = PUMP_READ;
      let at = 0;
      // The slab holding the small messages from batch offset slabStart to slabEnd.
      let slab = NO_SLAB;
      let slabStart = 0;
      let slabEnd = 0;
      while (at < n) {
        if (n - at < FRAME_HEADER_SIZE) throw protocolError('truncated frame in read batch');
        // A goodbye is a peer's last frame: one read after it could only be a hostile peer's.
        if (this.peerSaidBye) throw protocolError('frames after goodbye');
        const word = at >>> 2;
        const length = words[word];
        const kind = batch[at + 4];
        const id = words[word + 2];
        const total = words[word + 3];
        const size = frameSize(length);
        if (at + size > n) throw protocolError('frame overruns read batch');
        let message: Buffer | undefined;
        if (length === total && length <= SLAB_MAX_MESSAGE && length > 0) {
          // A whole small message: a view of a slab copied from the batch (the batch is reused).
          if (at + size > slabEnd) {
            slab = copySmallFrames(batch, words, at, n);
            slabStart = at;
            slabEnd = at + slab.byteLength;
          }
          message = viewOf(slab, at - slabStart + FRAME_HEADER_SIZE, length);
        } else {
          // A fragment, or (length 0) the announcement of a large message: the assembler starts
          // it, and the next turn of the loop reads it with readContinuation.
          const chunk = batch.subarray(at + FRAME_HEADER_SIZE, at + FRAME_HEADER_SIZE + length);
          message = this.assembler.push(kind, id, total, chunk);
        }
        at += size;
        if (message !== undefined) this.dispatch(kind, id, message);
        // A handler may have closed the channel, or dropped the client: the rest of the batch is moot.
        if (!this.reading) return read;
      }
      budget -= n;
      if (budget <= 0) return read | PUMP_MORE;
    }
    return read;
  }

  private dispatch(kind: number, id: number, data: Buffer): void {
    switch (kind) {
      case FrameKind.NOTIFY:
        this.notificationsBroadcast.next(data);
        return;
      case FrameKind.REQUEST:
        this.onRequest(id, data);
        return;
      case FrameKind.RESPONSE:
        this.pendingRequests.get(id)?.subscriber.next(data);
        return;
      case FrameKind.COMPLETE: {
        const pending = this.pendingRequests.get(id);
        this.pendingRequests.delete(id);
        pending?.subscriber.complete();
        return;
      }
      case FrameKind.ERROR: {
        const pending = this.pendingRequests.get(id);
        this.pendingRequests.delete(id);
        pending?.subscriber.error(decodeRemoteError(data));
        return;
      }
      case FrameKind.CANCEL:
        this.incomingRequests.get(id)?.cancel();
        return;
      case FrameKind.HELLO:
        if (this.mode === 'server') this.stateSubject.next('connected');
        return;
      case FrameKind.BYE:
        this.onPeerBye();
        return;
      default:
        throw protocolError(`unknown frame kind ${kind}`);
    }
  }

  private onRequest(id: number, data: Buffer): void {
    const request = new IncomingRequest(id, data, this);
    if (this.incomingRequests.has(id)) throw protocolError(`request id ${id} reused while in flight`);
    if (!this.requestsBroadcast.observed) {
      request.rejectUnhandled(`no handler for requests on ${this.mode} ${this.name}`);
      return;
    }
    this.incomingRequests.set(id, request);
    this.requestsBroadcast.next(request);
  }

  // ---- peer loss and failure ----

  /** The peer said goodbye. Its requests end now; a server frees the slot once it detached. */
  private onPeerBye(): void {
    debug('%s %s: peer said goodbye', this.mode, this.name);
    this.peerSaidBye = true;
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
        this.stateSubject.next('peer-lost');
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
    this.outbound?.clear();
    this.settleDrainWaiters(
      createError('ERR_PEER_LOST', `the client of ${this.name} left before reading what was queued`),
    );
    this.assembler.reset();
    native.acceptNext();
    this.peerSaidBye = false;
    this.droppingClient = false;
    this.stateSubject.next('open');
  }

  /**
   * Server: the client broke the protocol. It is told to leave and nothing more is read from
   * it; its requests fail with `error`, and what was queued for it is gone. Once it has left
   * (or died), onPeerGone takes the next client as usual.
   */
  private dropClient(native: NativeChannel, error: ShmChannelError): void {
    if (this.droppingClient) return;
    debug('server %s dropped its client: %s', this.name, error.message);
    native.dropClient();
    this.droppingClient = true;
    this.outbound?.clear();
    this.settleDrainWaiters(error);
    this.assembler.reset();
    this.endRequests(() => error);
    // Why first, then that the client is gone: state$ watchers (the CLI) tell it in that order.
    if (this.clientErrorsBroadcast.observed) {
      this.clientErrorsBroadcast.next(error);
    } else {
      // Not silently: it used to fail the server, and a dropped client is worth knowing of.
      process.emitWarning(`shmchannel: server ${this.name} dropped its client: ${error.message}`, {
        code: 'SHMCHANNEL_CLIENT_DROPPED',
      });
    }
    if (!this.closed && this.stateSubject.value !== 'peer-lost') this.stateSubject.next('peer-lost');
  }

  /** Frames are read and dispatched: open, and not waiting for a dropped client to leave. */
  private get reading(): boolean {
    return this.native !== undefined && !this.droppingClient;
  }

  private loseRequests(): void {
    if (this.stateSubject.value !== 'peer-lost') this.stateSubject.next('peer-lost');
    this.endRequests(() => peerLostError(this.name));
  }

  /** Resolves every drained() waiter, or rejects them all with `err`. */
  private settleDrainWaiters(err?: ShmChannelError): void {
    if (this.drainWaiters.length === 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  }

  private endRequests(makeError: () => ShmChannelError): void {
    const pending = [...this.pendingRequests.values()];
    this.pendingRequests.clear();
    for (const p of pending) p.subscriber.error(makeError());
    const incoming = [...this.incomingRequests.values()];
    this.incomingRequests.clear();
    for (const r of incoming) r.cancel();
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
    const pending = [...this.pendingRequests.values()];
    this.pendingRequests.clear();
    for (const p of pending) p.subscriber.error(error);
    this.notificationsBroadcast.error(error);
    this.requestsBroadcast.error(error);
    this.closeNow();
  }

  /** Closes without waiting for the queue: the peer is gone or the channel is broken. */
  private closeNow(): void {
    this.closing ??= this.shutdown(false);
  }

  // ---- helpers ----

  /**
   * Every outgoing message goes through here; a corrupt outbound ring fails the channel.
   * `duringClose`: allowed while close() still delivers the queue (answers, cancels).
   */
  private send(kind: number, id: number, data: Buffer, control = false, duringClose = false): boolean {
    if (this.droppingClient && !this.closed) {
      throw createError(
        'ERR_PEER_LOST',
        `the client of ${this.name} was dropped for breaking the protocol; the next one can connect once it left`,
      );
    }
    const outbound =
      duringClose && this.outbound !== undefined && this.native !== undefined ? this.outbound : this.writable();
    let inRing: boolean;
    try {
      inRing = outbound.send(kind, id, data, control);
    } catch (err) {
      if (err instanceof ShmChannelError) throw err;
      const error = fromNativeError(err);
      // The native error itself: its reason tells a dropped client from a lost segment.
      if (error.code === 'ERR_PROTOCOL') this.fail(err);
      throw error;
    }
    this.startPolling();
    return inRing;
  }

  private writable(): OutboundQueue {
    if (this.closed) throw this.closedError();
    if (this.outbound === undefined) {
      throw createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is not open: call open() first`);
    }
    return this.outbound;
  }

  /** A server's request needs a client to answer it; none attached would mean waiting forever. */
  private checkPeerAttached(): void {
    if (this.mode === 'client' || this.stateSubject.value === 'connected') return;
    // Attached but its hello not read yet counts as connected.
    if (this.native !== undefined && (this.native.info().state & SegmentState.CLIENT_ATTACHED) !== 0) return;
    throw createError('ERR_PEER_LOST', `no client is connected to ${this.name}: nobody could answer the request`);
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

  private allocateRequestId(): number {
    // 32-bit ids, never 0, never one still in flight (at most 2^32-1 can be).
    do {
      this.lastRequestId = this.lastRequestId === 0xffffffff ? 1 : this.lastRequestId + 1;
    } while (this.pendingRequests.has(this.lastRequestId));
    return this.lastRequestId;
  }

  private closedError(): ShmChannelError {
    return createError('ERR_CHANNEL_CLOSED', `channel ${this.name} is closed`);
  }
}

const NO_SLAB = new ArrayBuffer(0);

/**
 * A copy, in an ArrayBuffer of its own, of the run of whole small messages that starts at `at`
 * in a read batch, up to SLAB_BYTES: one allocation and one copy for many messages, each then
 * handed out as a view. Small slabs bound what one message a subscriber keeps can hold alive,
 * as Node's own Buffer pool does.
 */
function copySmallFrames(batch: Buffer, words: Uint32Array, at: number, n: number): ArrayBuffer {
  let end = at;
  while (end + FRAME_HEADER_SIZE <= n) {
    const length = words[end >>> 2];
    if (length !== words[(end >>> 2) + 3] || length > SLAB_MAX_MESSAGE) break;
    const next = end + frameSize(length);
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

function peerLostError(name: string): ShmChannelError {
  return createError('ERR_PEER_LOST', `the peer of ${name} went away`);
}

function checkOptions(o: ChannelOptions): void {
  const wholeNumber = (
    key: keyof ChannelOptions,
    min: number,
    max: number,
    code: 'ERR_INVALID_SIZE' | 'ERR_INVALID_ARG_VALUE',
  ) => {
    const v = o[key];
    if (v === undefined) return;
    if (typeof v !== 'number')
      throw createError('ERR_INVALID_ARG_TYPE', `options.${key} must be a number, got ${typeof v}`);
    if (!Number.isInteger(v) || v < min || v > max) {
      throw createError(code, `options.${key} must be a whole number from ${min} to ${max}, got ${v}`);
    }
  };
  wholeNumber('ringCapacity', 4096, 1 << 30, 'ERR_INVALID_SIZE');
  if (o.ringCapacity !== undefined && (o.ringCapacity & (o.ringCapacity - 1)) !== 0) {
    throw createError('ERR_INVALID_SIZE', `options.ringCapacity must be a power of two, got ${o.ringCapacity}`);
  }
  wholeNumber('maxMessageSize', 1, 1 << 30, 'ERR_INVALID_SIZE');
  wholeNumber('maxQueuedBytes', 0, Number.MAX_SAFE_INTEGER, 'ERR_INVALID_SIZE');
  wholeNumber('permissions', 0, 0o777, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('connectTimeout', 0, 2 ** 31 - 1, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('requestTimeout', 1, 2 ** 31 - 1, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('pollWindowUs', 0, 1_000_000, 'ERR_INVALID_ARG_VALUE');
  wholeNumber('closeTimeout', 0, 2 ** 31 - 1, 'ERR_INVALID_ARG_VALUE');
}
