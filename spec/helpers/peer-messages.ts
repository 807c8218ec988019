// What the test process (Peer) and a spawned peer (peer-process) say to each other over the
// child_process IPC channel. JSON only: payloads are generated from (size, seed) on each
// side instead of being shipped.
import type { ChannelOptions, ChannelState } from '../../lib/index';
import type { Summary } from './payload';

export interface PeerConfig {
  name: string;
  mode: 'server' | 'client';
  options?: ChannelOptions;
  /** Wait this long before open(), e.g. to be a server that appears late. */
  startDelayMs?: number;
  /** Run the peer as this user and group (through setpriv), e.g. to test permissions. */
  runAs?: { uid: number; gid: number };
  /** Extra environment of the peer process, e.g. LD_PRELOAD of a fault injector. */
  env?: Record<string, string>;
}

/** A message to send: `text`, or `size` pattern bytes of `seed` (see patternBuffer). */
export interface PayloadSpec {
  text?: string;
  size?: number;
  seed?: number;
}

/** How the peer answers requests. */
export type HandlerSpec =
  | { kind: 'echo' }
  | { kind: 'upper' }
  | { kind: 'stream'; count: number } // `${text}#${i}` for i < count, then complete
  | { kind: 'error'; message: string; code?: string }
  | { kind: 'fail-on'; match: string; message: string } // error for `match`, echo otherwise
  | { kind: 'slow'; ms: number } // echo after ms
  | { kind: 'random-delay'; maxMs: number } // echo after 0..maxMs
  | { kind: 'never' }
  | { kind: 'ticks'; ms: number } // `${text}#${i}` every ms, forever
  | { kind: 'sha256' } // `${length}:${sha256}` of the request data
  | { kind: 'generate' } // request text is JSON {size, seed}: answer with that pattern
  | { kind: 'respond-twice' }; // respond(), then respond() again and report what it threw

export type PeerCommand =
  | ({ cmd: 'notify'; count?: number; sizes?: number[] } & PayloadSpec)
  | ({ cmd: 'request'; timeout?: number } & PayloadSpec)
  | { cmd: 'handle'; handler: HandlerSpec }
  | { cmd: 'unhandle' }
  | { cmd: 'collect'; count: number }
  | { cmd: 'stats' }
  | { cmd: 'flood'; count: number; size: number; requests: number }
  | { cmd: 'close' };

export interface ErrorReport {
  message: string;
  code?: string;
  remoteCode?: string;
  errno?: string;
  ownerPid?: number;
}

export interface NotifyResult {
  /** Summaries of what was sent, in order. */
  sent: Summary[];
}

export interface RequestResult {
  values: Summary[];
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

export interface CollectResult {
  notifications: Summary[];
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
  | { event: 'ready'; pid: number }
  | { event: 'open-failed'; error: ErrorReport }
  | { event: 'state'; state: ChannelState }
  | { event: 'cancelled'; requestId: number; text?: string } // request.cancelled$ emitted
  | { event: 'unsubscribed'; requestId: number } // the handler's Observable was torn down before it ended
  | { event: 'respond-twice'; requestId: number; code?: string }
  | { event: 'stream-error'; stream: string; error: ErrorReport }
  | { event: 'fatal'; error: ErrorReport };

export type PeerMessage =
  { type: 'reply'; seq: number; result?: unknown; error?: ErrorReport } | ({ type: 'event' } & PeerEvent);

export type ParentMessage = { seq: number; command: PeerCommand };
