// What the test thread (ThreadPeer) and a worker thread holding a Channel
// (thread-channel.ts) say to each other over the worker's message port.
import type { ChannelOptions, ChannelState } from '../../lib/index';

export interface ThreadConfig {
  name: string;
  mode: 'server' | 'client';
  options?: ChannelOptions;
}

export type ThreadCommand =
  { cmd: 'notify'; text: string } | { cmd: 'request'; text: string } | { cmd: 'handle-upper' } | { cmd: 'close' };

export interface ThreadErrorReport {
  message: string;
  code?: string;
}

export type ThreadMessage =
  | { type: 'ready'; threadId: number }
  | { type: 'open-failed'; error: ThreadErrorReport }
  | { type: 'state'; state: ChannelState }
  | { type: 'notification'; text: string }
  | { type: 'reply'; seq: number; result?: string; error?: ThreadErrorReport };

export type ThreadRequest = { seq: number; command: ThreadCommand };
