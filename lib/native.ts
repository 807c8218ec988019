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

/** What a segment's header says it holds: its `kind` (docs/PROTOCOL.md §1.1; NativeSegmentInfo.kind). */
export const SegmentKind = {
  /** A server and its one client (a channel opened with maxClients 1). */
  CHANNEL: 0,
  /** The name of a server of many clients: the slots they claim (docs/PROTOCOL.md §7). */
  DIRECTORY: 1,
  /** One client's connection to a server of many, named `<name>~<slot>`. */
  CONNECTION: 2,
} as const;

/** A directory slot's phase (docs/PROTOCOL.md §7.2; NativeClientInfo.phase). */
export const SlotPhase = {
  FREE: 0,
  /** A client took it and asks for a connection. */
  CLAIMED: 1,
  /** The server made the connection; the client attaches to it. */
  READY: 2,
  /** The client gave up before READY; the server frees it. */
  CANCELLED: 3,
  /** The server could not make the connection; it is freed. */
  REFUSED: 4,
} as const;

/** A server of many clients has at most MAX_CLIENTS slots; DEFAULT_MAX_CLIENTS when the options leave it out. */
export const MAX_CLIENTS = 256;
export const DEFAULT_MAX_CLIENTS = 16;

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
  /** Lets the waker thread sleep on the doorbell again; call after draining. A connection's: does nothing (its server's waker wakes for it). */
  arm(): void;
  info(): NativeChannelInfo;
  /** Server, while disarmed: forget the gone client, reset the rings, accept the next. A connection throws. */
  acceptNext(): void;
  /** Server: its client broke the protocol; stop reading and flag it to leave (then acceptNext). */
  dropClient(): void;
  /** The peer as the waker would judge it now (PeerState). */
  peerState(): number;
  ref(): void;
  unref(): void;
  /**
   * Stops the waker, detaches; the server unlinks its segment. A connection's: its server ends
   * it (the client learns as from a server's close). Idempotent.
   */
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
    /** A client's: a Connector whose finish() returned true; its channel is taken instead of attaching. */
    connector?: NativeConnector,
  ): NativeChannel;
}

/**
 * A server of many clients (maxClients > 1): its directory, one waker thread for every
 * connection, and the connections, each a NativeChannel of its own.
 */
export interface NativeServer {
  /** Lets the waker thread sleep again; call after the work of a wake (accept(), left(), reads). */
  arm(): void;
  /**
   * The next client that asks: [connection id, client pid, its connection]; null if none asks.
   * Throws the error that made the server refuse a client (that client learns ERR_RESOURCE_LIMIT);
   * call again for the next.
   */
  accept(): [number, number, NativeChannel] | null;
  /** Ids of the connections whose client closed or died, each reported once: read what is left, then close() it. */
  left(): number[];
  /** Connections open now. */
  connections(): number;
  ref(): void;
  unref(): void;
  /** Stops the waker, ends every connection (their channels read as closed), unlinks the names. Idempotent. */
  close(): void;
}

export interface NativeServerConstructor {
  new (
    name: string,
    ringCapacity: number,
    maxMessageSize: number,
    mode: number,
    poolCapacity: number,
    maxClients: number,
    /** Called with WakeEvent.ACTIVITY (only) from the event loop after the waker woke; disarmed until arm(). */
    onWake: (events: number) => void,
  ): NativeServer;
}

/** A client's connect in steps: it never blocks the event loop while the server makes the connection. */
export interface NativeConnector {
  /**
   * True once attached (pass this to new Channel(1, name, 0, 0, 0, onWake, 0, connector));
   * false while the server has not made the connection yet. Throws when it cannot be made (the
   * attempt is over: a server that went away throws ERR_SHM_OPEN_FAILED, reason NOT_READY).
   */
  finish(): boolean;
  /** Gives the claimed slot back, or closes an attached channel no Channel took. Idempotent. */
  cancel(): void;
}

export interface NativeConnectorConstructor {
  /** Claims a slot of a server of many (or attaches at once to a server of one); throws as new Channel(1, name) does. */
  new (name: string): NativeConnector;
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
  /** SegmentKind. */
  kind: number;
  /** A directory's slots; 1 for a channel or a connection. */
  maxClients: number;
  /** A connection's id; 0 otherwise. */
  connectionId: number;
}

/** One taken slot of a directory (inspectClients). */
export interface NativeClientInfo {
  /** Its connection is named `<name>~<slot>`. */
  slot: number;
  pid: number;
  /** SlotPhase. */
  phase: number;
  /** 0 until the server made the connection. */
  connectionId: number;
  /** That process still runs. */
  alive: boolean;
}

export interface NativeBinding {
  Channel: NativeChannelConstructor;
  SharedMemory: NativeSharedMemoryConstructor;
  Server: NativeServerConstructor;
  Connector: NativeConnectorConstructor;
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
  /** The taken slots of a directory, in slot order; ERR_INCOMPATIBLE_SEGMENT for any other name. */
  inspectClients(name: string): NativeClientInfo[];
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
