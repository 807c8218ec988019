// Zero-copy: the loans a connection hands out of its own pool, and the messages it borrows from
// the peer's (docs/PROTOCOL.md §6). Each is a Buffer over shared memory, backed by an
// ArrayBuffer of its own that the binding detaches when the bytes stop being ours to touch: a
// loan once sent, a borrowed message once released, everything at close or when the peer goes.
// Giving back is explicit (release(), `using`); a FinalizationRegistry only catches what was
// forgotten, says so, and gives it back then.
import { Buffer } from 'node:buffer';

import { createError, fromNativeError, ShmChannelError } from './errors';
import type { NativeChannel } from './native';
import { viewOf } from './protocol';
import { allocateMessage } from './message-pool';

/** A loan or a borrowed message: a Buffer that `using` gives back at the end of its block. */
export type LoanedBuffer = Buffer & Disposable;

/** What a loan or borrowed Buffer stands for. */
interface Lent {
  readonly loans: Loans;
  readonly offset: number;
  /** A loan of ours (false: a message borrowed from the peer). */
  readonly own: boolean;
  /** Released, sent, or gone with the channel: nothing to give back any more. */
  done: boolean;
}

/** A send by reference: bytes [start, start + length) of the loan at pool `offset`. */
export interface LoanReference {
  offset: number;
  start: number;
  length: number;
}

// Keyed by ArrayBuffer, so each entry lives exactly as long as its memory is reachable; the
// entry holds its Loans (and through it the native channel), so the mapping outlives every view.
const lent = new WeakMap<ArrayBufferLike, Lent>();

const forgotten = new FinalizationRegistry<Lent>((entry) => entry.loans.collected(entry));

function disposer(buffer: Buffer): () => void {
  return () => release(buffer);
}

/**
 * Gives back a loan not sent, or a borrowed message. Idempotent, and nothing for any other bytes:
 * a borrowing receiver releases every message it got, whether it came by reference or by copy.
 */
export function release(data: unknown): void {
  if (!(data instanceof Uint8Array)) {
    throw createError('ERR_INVALID_ARG_TYPE', 'release() takes a Buffer from loan() or a received message');
  }
  const entry = lent.get(data.buffer);
  if (entry !== undefined) entry.loans.giveBack(entry);
}

/** The Loans that `data` is an unsent loan of, if it is one (a broadcast sends it by reference last). */
export function lenderOf(data: Uint8Array): Loans | undefined {
  const entry = lent.get(data.buffer);
  return entry !== undefined && entry.own && !entry.done ? entry.loans : undefined;
}

export class Loans {
  /** Offsets lent now, own and borrowed, to what stands for them. */
  private readonly live = new Map<string, Lent>();
  private waiters: Array<{ size: number; resolve: (b: LoanedBuffer) => void; reject: (e: ShmChannelError) => void }> =
    [];
  /** The runtime refuses external memory (Electron's V8 sandbox): loans and borrows are copies. */
  private externalRefused = false;
  /** A server dropping its client: its pool waits, untouched, for the client to be gone. */
  private paused = false;

  constructor(
    private readonly native: NativeChannel,
    /** Bytes of each direction's pool; 0: this channel has none. */
    readonly poolCapacity: number,
    private readonly maxMessageSize: number,
    /** Hand out received loans as views to be released (else copies, released at once). */
    private readonly borrow: boolean,
    private readonly name: string,
    /** The peer broke the protocol in its pool or release ring (ERR_PROTOCOL, native reason PROTOCOL). */
    private readonly failed: (err: unknown) => void,
  ) {}

  /** A loan of `size` bytes now, or the error that says why not (ERR_POOL_EXHAUSTED: not now). */
  loan(size: number): LoanedBuffer {
    this.checkSize(size);
    // Waiters come first: a loan taken now would take what they wait for.
    const got = this.waiters.length === 0 && !this.paused ? this.tryLoan(size) : undefined;
    if (got !== undefined) return got;
    const why = this.paused
      ? 'its client is being dropped'
      : this.waiters.length > 0
        ? `${this.waiters.length} waitForLoan() calls wait before this one`
        : `no run of ${size} free bytes (of ${this.poolCapacity})`;
    throw createError(
      'ERR_POOL_EXHAUSTED',
      `cannot loan ${size} bytes on ${this.name} now: ${why}; waitForLoan() waits for the room`,
    );
  }

  /** A loan of `size` bytes once the pool has them; FIFO among waiters. */
  waitForLoan(size: number): Promise<LoanedBuffer> {
    try {
      this.checkSize(size);
      if (this.waiters.length === 0 && !this.paused) {
        const got = this.tryLoan(size);
        if (got !== undefined) return Promise.resolve(got);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => this.waiters.push({ size, resolve, reject }));
  }

  /** After a wake: waiters whose loan fits now get it, in order. */
  retryWaiters(): void {
    while (this.waiters.length > 0 && !this.paused) {
      const w = this.waiters[0];
      let got: LoanedBuffer | undefined;
      try {
        got = this.tryLoan(w.size);
      } catch (err) {
        // The peer broke the protocol and is being dropped: the waiter keeps its place.
        if (this.paused) return;
        this.waiters.shift();
        w.reject(err instanceof ShmChannelError ? err : createError('ERR_PROTOCOL', String(err)));
        continue;
      }
      if (got === undefined) return;
      this.waiters.shift();
      w.resolve(got);
    }
  }

  /**
   * If `data` views a loan of this connection not yet sent: that loan, now on its way (its
   * Buffer detached). Anything else (a loan of another channel, a borrowed message) is undefined
   * and goes by copy.
   */
  take(data: Buffer): LoanReference | undefined {
    const entry = lent.get(data.buffer);
    if (entry === undefined) return undefined;
    // Its bytes are gone: sending the empty view would send an empty message instead.
    this.refuseDetached(data);
    if (entry.loans !== this || !entry.own || entry.done) return undefined;
    const ref = { offset: entry.offset, start: data.byteOffset, length: data.length };
    this.settle(entry);
    this.native.detachLoan(entry.offset);
    return ref;
  }

  /**
   * A loan taken for sending that will never go out (the send failed, the peer left): back to
   * the pool. Waiters are served at the next wake, not from inside the send or the peer's leave.
   */
  unsent(offset: number): void {
    try {
      this.native.unloan(offset);
    } catch {
      // The channel closed meanwhile: the whole pool went with it.
    }
  }

  /** A response that will not be sent after all: if `data` is an unsent loan of ours, it goes back. */
  abandon(data: Uint8Array): void {
    const entry = lent.get(data.buffer);
    if (entry !== undefined && entry.loans === this && entry.own) this.giveBack(entry);
  }

  /** Throws if `data` is the detached Buffer of a loan already sent or a view already released. */
  refuseDetached(data: Uint8Array): void {
    const entry = lent.get(data.buffer);
    if (entry === undefined || !entry.done || data.buffer.byteLength !== 0) return;
    const what = entry.own ? 'a loan that was already sent or released' : 'a borrowed message that was released';
    throw createError('ERR_INVALID_ARG_VALUE', `cannot send ${what}: its Buffer is detached`);
  }

  /**
   * A message that arrived by reference (its descriptor at `at` in `frames`, `total` bytes):
   * with `borrow`, a view to release; else a copy, and the loan goes back at once.
   * `wanted`: someone will get it (false: released unread).
   */
  receive(frames: Buffer, at: number, total: number, wanted: boolean): Buffer {
    const offset = frames.readUInt32LE(at);
    const start = frames.readUInt32LE(at + 12);
    if (!wanted) {
      this.native.release(offset);
      return Buffer.alloc(0);
    }
    if (this.borrow && !this.externalRefused) {
      const memory = this.native.borrow(offset, start, total);
      if (memory !== undefined) return this.hand(memory, offset, false, total);
      this.externalRefused = true;
    }
    const copy = this.borrow ? plainCopy(total) : allocateMessage(total);
    this.native.copyBorrowed(offset, start, copy);
    this.native.release(offset);
    return copy;
  }

  /** Gives back `message` if it is a borrowed view still held (a copy needs nothing). */
  discard(message: Buffer): void {
    const entry = lent.get(message.buffer);
    if (entry !== undefined && entry.loans === this) this.giveBack(entry);
  }

  /** @internal release(): gives back what `entry` stands for, once. */
  giveBack(entry: Lent): void {
    if (entry.done) return;
    this.settle(entry);
    if (!entry.own) {
      try {
        this.guarded(() => this.native.release(entry.offset));
      } catch {
        // The peer broke the protocol (now or before): its connection is failing, and what
        // we held of its pool is forgotten with it. Giving back stays quiet, as promised.
      }
      return;
    }
    this.native.unloan(entry.offset);
    this.retryWaiters();
  }

  /** @internal A loan or borrowed Buffer was collected without being given back. */
  collected(entry: Lent): void {
    if (entry.done) return;
    const what = entry.own ? 'a loan' : 'a borrowed message';
    process.emitWarning(
      `${what} of channel ${this.name} was garbage-collected without being released; ` +
        'it was given back now (call release() or use `using`)',
      { code: 'SHMCHANNEL_LEAKED_LOAN' },
    );
    try {
      this.giveBack(entry);
    } catch {
      // Closed meanwhile: nothing left to give back.
    }
  }

  /** A server drops its client: nothing is lent or handed to waiters until it is gone. */
  pause(): void {
    this.paused = true;
  }

  /** The peer left: what we borrowed is gone (the binding detaches the views). */
  peerLeft(): void {
    this.paused = false;
    for (const entry of [...this.live.values()]) if (!entry.own) this.settle(entry);
  }

  /** The channel closed: nothing is lent any more, and waiters learn why. */
  close(err: ShmChannelError): void {
    for (const entry of [...this.live.values()]) this.settle(entry);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  private checkSize(size: number): void {
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) {
      throw createError('ERR_INVALID_ARG_VALUE', `loan size must be a whole number of bytes, got ${String(size)}`);
    }
    const largest = Math.min(this.poolCapacity, this.maxMessageSize);
    if (size > largest) {
      const why =
        this.poolCapacity === 0
          ? 'the channel has no loan pool (open the server with poolSize)'
          : `the largest loan is ${largest} bytes (poolSize ${this.poolCapacity}, maxMessageSize ${this.maxMessageSize})`;
      throw createError('ERR_MESSAGE_TOO_LARGE', `cannot loan ${size} bytes on ${this.name}: ${why}`);
    }
  }

  private tryLoan(size: number): LoanedBuffer | undefined {
    if (this.externalRefused) return plainCopy(size);
    const got = this.guarded(() => this.native.loan(size));
    if (got === null) return undefined;
    if (got === undefined) {
      this.externalRefused = true;
      return plainCopy(size);
    }
    return this.hand(got[1], got[0], true, size);
  }

  /** A Buffer over `memory`, lent under `offset` until given back. */
  private hand(memory: ArrayBuffer, offset: number, own: boolean, length: number): LoanedBuffer {
    const entry: Lent = { loans: this, offset, own, done: false };
    const buffer = viewOf(memory, 0, length);
    if (canTransfer) refuseTransfer(memory);
    lent.set(memory, entry);
    this.live.set(key(own, offset), entry);
    forgotten.register(memory, entry, entry);
    Object.defineProperty(buffer, Symbol.dispose, { value: disposer(buffer), configurable: true });
    return buffer as LoanedBuffer;
  }

  /** Runs a native call; a violation by the peer it finds fails the connection, and is thrown. */
  private guarded<T>(call: () => T): T {
    try {
      return call();
    } catch (err) {
      const error = fromNativeError(err);
      if (error.code === 'ERR_PROTOCOL') this.failed(err);
      throw error;
    }
  }

  private settle(entry: Lent): void {
    entry.done = true;
    this.live.delete(key(entry.own, entry.offset));
    forgotten.unregister(entry);
  }
}

// ArrayBuffer.prototype.transfer (Node 21+) moves the memory to a new ArrayBuffer that the
// channel does not know of, and could not detach before the segment is unmapped: refused.
const canTransfer = 'transfer' in ArrayBuffer.prototype;

function refuseTransfer(memory: ArrayBuffer): void {
  const refuse = (): never => {
    throw createError('ERR_INVALID_ARG_VALUE', 'the memory of a loan or a borrowed message cannot be transferred');
  };
  for (const name of ['transfer', 'transferToFixedLength']) {
    Object.defineProperty(memory, name, { value: refuse, configurable: false, writable: false });
  }
}

/** Where the runtime refuses external memory: a Buffer of its own, disposable as a loan is. */
function plainCopy(size: number): LoanedBuffer {
  const buffer = Buffer.alloc(size);
  Object.defineProperty(buffer, Symbol.dispose, { value: () => undefined, configurable: true });
  return buffer as LoanedBuffer;
}

function key(own: boolean, offset: number): string {
  return own ? `o${offset}` : `p${offset}`;
}
