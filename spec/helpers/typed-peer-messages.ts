// What the test process (TypedPeer) and a forked typed peer (typed-peer-process) say to each
// other. The IPC channel uses 'advanced' serialization, so values keep their Maps and Dates.
import type { ErrorReport } from './peer-messages';

export type CodecName = 'raw' | 'utf8' | 'json' | 'structuredClone';

export interface TypedPeerConfig {
  name: string;
  mode: 'server' | 'client';
  /** The codec of notifications, requests and responses alike. */
  codec: CodecName;
}

/**
 * How the peer answers requests (with handleTypedWith): `echo` the value; `stream` three
 * values `{ index, value }`; `ticks` the value every 20 ms until cancelled; `unencodable`
 * a value the codec refuses.
 */
export type TypedHandlerKind = 'echo' | 'stream' | 'ticks' | 'unencodable';

export type TypedPeerCommand =
  | { cmd: 'handle'; kind: TypedHandlerKind }
  | { cmd: 'notify'; value: unknown }
  | { cmd: 'request'; value: unknown }
  | { cmd: 'collect'; count: number }
  | { cmd: 'codec-errors' }
  | { cmd: 'close' };

export interface TypedRequestResult {
  values: unknown[];
  error?: ErrorReport;
}

export type TypedPeerEvent =
  | { event: 'ready' }
  | { event: 'open-failed'; error: ErrorReport }
  | { event: 'cancelled'; requestId: number }
  | { event: 'fatal'; error: ErrorReport };

export type TypedPeerMessage =
  { type: 'reply'; seq: number; result?: unknown; error?: ErrorReport } | ({ type: 'event' } & TypedPeerEvent);
