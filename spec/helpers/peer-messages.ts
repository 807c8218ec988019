// What the test (Peer, peer.ts) and a peer (peer-body.ts) say to each other, over the
// child_process IPC channel or a worker's message port. Both carry structured clones (the IPC
// channel uses 'advanced' serialization), so a typed peer's values keep their Maps and Dates.
// Byte payloads are generated from (size, seed) on each side instead of being shipped.
import type { ChannelOptions, ChannelState } from '../../lib/index';
import type { Summary } from './payload';

/** The codecs a typed peer can use: one for its notifications, requests and responses alike. */
export type CodecName = 'raw' | 'utf8' | 'json' | 'structuredClone';

export interface PeerConfig {
  name: string;
  mode: 'server' | 'client';
  options?: ChannelOptions;
  /** Run in a worker thread of the test process instead of a child process of its own. */
  thread?: boolean;
  /**
   * Send and receive values through a TypedChannel with this codec: payloads are `{ value }`,
   * and what the peer received comes back as the decoded values instead of Summaries.
   */
  codec?: CodecName;
  /** Wait this long before open(), e.g. to be a server that appears late. */
  startDelayMs?: number;
  /** Run the peer process as this user and group (through setpriv), e.g. to test permissions. */
  runAs?: { uid: number; gid: number };
  /** Extra environment of the peer, e.g. LD_PRELOAD of a fault injector. */
  env?: Record<string, string>;
}

/**
 * A message to send: `text`, or `size` pattern bytes of `seed` (see patternBuffer); for a typed
 * peer, `value`.
 */
export interface PayloadSpec {
  text?: string;
  size?: number;
  seed?: number;
  value?: unknown;
}

/**
 * How the peer answers requests (through handleWith, or handleTypedWith for a typed peer).
 * `stream` and `ticks` number their values: `${text}#${i}` for bytes, `{ index: i, value }`
 * (stream) or the value itself (ticks) for a typed peer, which takes only the kinds marked so.
 */
export type HandlerSpec =
  | { kind: 'echo' } // also typed
  | { kind: 'upper' }
  | { kind: 'stream'; count: number } // also typed; count values, then complete
  | { kind: 'error'; message: string; code?: string }
  | { kind: 'fail-on'; match: string; message: string } // error for `match`, echo otherwise
  | { kind: 'slow'; ms: number } // echo after ms
  | { kind: 'random-delay'; maxMs: number } // echo after 0..maxMs
  | { kind: 'never' }
  | { kind: 'ticks'; ms: number } // also typed; a value every ms, forever
  | { kind: 'sha256' } // `${length}:${sha256}` of the request data
  | { kind: 'generate' } // request text is JSON {size, seed}: answer with that pattern
  | { kind: 'respond-twice' } // respond(), then respond() again and report what it threw
  | { kind: 'unencodable' } // typed only: a value its codec refuses
  // Zero-copy: the request's bytes answered from a loan (`count` values `${i}` + the bytes, or
  // just the bytes once), the request's own borrowed view released first.
  | { kind: 'loan-echo' }
  | { kind: 'loan-stream'; count: number };

export type PeerCommand =
  | ({ cmd: 'notify'; count?: number; sizes?: number[] } & PayloadSpec)
  | ({ cmd: 'request'; timeout?: number } & PayloadSpec)
  | { cmd: 'handle'; handler: HandlerSpec }
  | { cmd: 'unhandle' }
  | { cmd: 'collect'; count: number }
  | { cmd: 'stats' }
  | { cmd: 'flood'; count: number; size: number; requests: number }
  | { cmd: 'close' }
  // `count` requests at once, texts `${prefix}${i}`; the text of each one's first value (or its
  // error code), in request order.
  | { cmd: 'request-many'; count: number; prefix: string }
  // Zero-copy. loan-notify: `count` loans (default 1) of `size` bytes, pattern of seed + i, sent
  // (bytes [from, to) of each with `slice`); reports what was sent and the loans' lengths after.
  | { cmd: 'loan-notify'; size: number; seed?: number; count?: number; slice?: [number, number] }
  | ({ cmd: 'loan-request' } & PayloadSpec)
  // Keep `count` loans of `size` bytes unsent; keep every borrowed message received from now on.
  | { cmd: 'hold-loans'; count: number; size: number }
  | { cmd: 'hold-views' }
  /** Releases every loan and view held; reports how many views were held. */
  | { cmd: 'release-held' }
  /** Loans `size` bytes and gives them back at once: that much of the pool is free. */
  | { cmd: 'loan-once'; size: number };

export interface RequestManyResult {
  answers: string[];
  errors: (string | undefined)[];
}

export interface ErrorReport {
  message: string;
  code?: string;
  remoteCode?: string;
  errno?: string;
  ownerPid?: number;
}

/**
 * What the peer sent or received: a Summary of the bytes, or for a typed peer the value itself
 * (Peer's type parameter).
 */
export interface NotifyResult<R = Summary> {
  /** What was sent, in order. */
  sent: R[];
  /** loan-notify: each loan's length right after it was sent (0: detached). */
  lengthsAfter?: number[];
}

export interface RequestResult<R = Summary> {
  values: R[];
  error?: ErrorReport;
}

/** What a flood of numbered, checksummed notifications (see floodMessage) cost the writer. */
export interface FloodResult {
  sent: number;
  /** notify() calls refused with ERR_QUEUE_FULL, each retried after a turn of the event loop. */
  queueFullRetries: number;
  maxQueuedBytes: number;
  maxRssBytes: number;
  requestsAnswered: number;
  requestErrors: ErrorReport[];
}

export interface HandlerStats {
  /** Request ids in arrival order. */
  arrivals: number[];
  /** Request ids in the order their handlers ended (completed, failed or were cancelled). */
  completions: number[];
  /** Texts of the requests (up to 1 KiB), in arrival order. */
  texts: (string | undefined)[];
  /** Requests that arrived with an id already in flight. */
  idCollisions: number;
  maxInFlight: number;
}

export type PeerEvent =
  | { event: 'ready'; pid: number; threadId: number }
  | { event: 'open-failed'; error: ErrorReport }
  | { event: 'state'; state: ChannelState }
  | { event: 'cancelled'; requestId: number; text?: string } // request.cancelled$ emitted
  | { event: 'unsubscribed'; requestId: number } // the handler's Observable was torn down before it ended
  | { event: 'respond-twice'; requestId: number; code?: string }
  | { event: 'stream-error'; stream: string; error: ErrorReport }
  | { event: 'codec-error'; error: ErrorReport } // a typed peer's codecErrors$
  | { event: 'fatal'; error: ErrorReport };

export type PeerMessage =
  { type: 'reply'; seq: number; result?: unknown; error?: ErrorReport } | ({ type: 'event' } & PeerEvent);

export type ParentMessage = { seq: number; command: PeerCommand };
