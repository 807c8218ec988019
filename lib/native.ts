// The binding's TypeScript types: the only description of what native code offers.
// Nothing but load-addon.ts loads it; channel.ts's parts, shared-memory.ts, names.ts and inspect-segment.ts call it.
// The constants below copy native definitions: native-constants.ts checks them against the addon's at load.

/** Bits passed to a channel's onWake callback. */
export const WakeEvent = {
  /** Frames to read, space to write, or a doorbell from the peer. */
  ACTIVITY: 1,
  /** The peer process is gone or said it closed. */
  PEER_LOST: 2,
} as const;

/** What peerState() returns. */
export const PeerState = { NONE: 0, ALIVE: 1, GONE: 2 } as const;

/** `state` bits of the segment header (docs/PROTOCOL.md §1.1). */
export const SegmentState = {
  SERVER_READY: 1,
  CLIENT_ATTACHED: 2,
  SERVER_CLOSED: 4,
  CLIENT_CLOSED: 8,
  CLIENT_DROPPED: 16,
} as const;

export interface NativeChannelInfo {
  ringCapacity: number;
  maxMessageSize: number;
  maxFramePayload: number;
  peerPid: number;
  clientEpoch: number;
  state: number;
  /** Loan pool bytes per direction; 0: none. */
  poolCapacity: number;
}

export interface NativeChannel {
  /** Appends one frame; false when it does not fit now (retry after the next wake). */
  write(kind: number, id: number, total: number, payload: Uint8Array): boolean;
  /**
   * Appends the longest prefix of whole one-frame messages in frames[0, length) (wire layout)
   * that fits; returns the bytes taken (fewer than length: retry after the next wake).
   */
  writeFrames(frames: Uint8Array, length: number): number;
  /**
   * Copies whole validated frames into target; returns the byte count (0: nothing to read).
   * A message of `largeFrom` bytes or more is only announced, by its header with length 0, when
   * it comes first (else the read stops before it): read it with readContinuation.
   */
  read(target: Uint8Array, largeFrom: number): number;
  /**
   * While a message is in progress, copies the payloads of its next fragments straight into
   * target, which must be exactly what the message still lacks; returns the bytes copied
   * (0: no fragment readable yet).
   */
  readContinuation(target: Uint8Array): number;
  /**
   * Lends `size` bytes of this side's pool: [pool offset, an ArrayBuffer of exactly those
   * bytes]. null: no free run that long now (a wake follows the peer's next release);
   * undefined: the runtime refuses external memory, nothing was lent.
   */
  loan(size: number): [number, ArrayBuffer] | null | undefined;
  /** Gives back a loan not sent (its ArrayBuffer is detached). */
  unloan(offset: number): void;
  /** Detaches a loan's ArrayBuffer: it is on its way out; the loan stays lent until written. */
  detachLoan(offset: number): void;
  /** Sends bytes [start, start + length) of a loan as one message; false when the ring is full. */
  writeLoan(kind: number, id: number, offset: number, start: number, length: number): boolean;
  /** An ArrayBuffer over a held loan's message; undefined if the runtime refuses external memory. */
  borrow(offset: number, start: number, length: number): ArrayBuffer | undefined;
  /** Copies target.length bytes of a held loan's message from `start` into target. */
  copyBorrowed(offset: number, start: number, target: Uint8Array): void;
  /** Gives a held loan back to the peer (its ArrayBuffer, if any, is detached first). */
  release(offset: number): void;
  /** Lets the waker thread sleep on the doorbell again; call after draining. */
  arm(): void;
  info(): NativeChannelInfo;
  /** Server, while disarmed: forget the gone client, reset the rings, accept the next. */
  acceptNext(): void;
  /** Server: its client broke the protocol; stop reading and flag it to leave (then acceptNext). */
  dropClient(): void;
  /** The peer as the waker would judge it now (PeerState). */
  peerState(): number;
  ref(): void;
  unref(): void;
  /** Stops the waker, detaches; the server unlinks its segment. Idempotent. */
  close(): void;
}

export interface NativeChannelConstructor {
  new (
    role: 0 | 1,
    name: string,
    ringCapacity: number,
    maxMessageSize: number,
    mode: number,
    onWake: (events: number) => void,
    poolCapacity: number,
  ): NativeChannel;
}

export interface NativeSharedMemory {
  /** Zero-copy view of the mapping; detached (length 0) after close(). */
  buffer(): ArrayBuffer;
  size(): number;
  /** The object lost pages (shrunk, or /dev/shm full) and the mapping has zeros there now. */
  truncated(): boolean;
  close(): void;
}

export interface NativeSharedMemoryConstructor {
  new (name: string, size: number, create: boolean, mode: number): NativeSharedMemory;
}

/** A segment's header as read without attaching (shmch_inspect). */
export interface NativeSegmentInfo {
  version: number;
  ringCapacity: number;
  maxMessageSize: number;
  poolCapacity: number;
  state: number;
  serverPid: number;
  clientPid: number;
  serverAlive: boolean;
  clientAlive: boolean;
}

export interface NativeBinding {
  Channel: NativeChannelConstructor;
  SharedMemory: NativeSharedMemoryConstructor;
  validateName(name: string): void;
  unlink(name: string): void;
  /**
   * sched_yield(): a thread that waits for this core runs first. Returns the milliseconds it
   * took (a system call's ~0.0004 alone; more when another thread ran meanwhile).
   */
  yieldProcessor(): number;
  /**
   * From now on loans and borrowed messages fall back to copies as under Electron's V8 sandbox
   * (no external memory), or stop doing so. Process-wide; for the specs of that fallback.
   */
  refuseExternalMemory(refuse: boolean): void;
  /** Throws ERR_INCOMPATIBLE_SEGMENT for a name that is not a shmchannel segment. */
  inspect(name: string): NativeSegmentInfo;
  /**
   * An uninitialized Buffer of `length` bytes in recycled native memory, or undefined when that
   * length is not recycled (under 64 KiB, over 32 MiB) or the runtime forbids external buffers.
   * Memory of collected messages is kept for reuse from then on.
   */
  messagePoolTake(length: number): Buffer | undefined;
  /** Frees the recycled memory that waits for reuse, and what comes back until the next take. */
  messagePoolRelease(): void;
  /** Bytes of recycled memory waiting for reuse (for tests). */
  messagePoolIdleBytes(): number;
  /** Which JavaScript side this build serves; see BINDING_REVISION in load-addon.ts. */
  bindingRevision?: number;
  /**
   * The numbers of the native definitions that TypeScript copies, under the TypeScript names:
   * checked at load against lib/native-constants.ts, then never read again.
   */
  constants?: NativeConstants;
}

/** Named numbers, and groups of them (`FrameKind`, `SegmentState`, ...). */
export interface NativeConstants {
  readonly [name: string]: number | NativeConstants;
}
