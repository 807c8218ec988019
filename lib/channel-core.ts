// What a Channel delegates to: one peer on one segment (SinglePeer: a client, or a server of
// one client), or a server of many clients (MultiClientServer). Channel checks the arguments;
// these do the work and report what depends on their state.
import type { Buffer } from 'node:buffer';

import type { Observable } from 'rxjs';

import type { ClosableAtExit } from './exit-cleanup';
import type { LoanedBuffer } from './loans';

export interface ChannelCore extends ClosableAtExit {
  readonly isOpen: boolean;
  /** Bytes waiting in outgoing queues. */
  readonly queuedBytes: number;
  open(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  notify(payload: Buffer): boolean;
  notifyMany(payloads: readonly Buffer[]): boolean;
  drained(): Promise<void>;
  loan(size: number): LoanedBuffer;
  waitForLoan(size: number): Promise<LoanedBuffer>;
  /** Cold: one request per subscription; `timeout` in ms, checked. */
  request(payload: Buffer, timeout: number | undefined): Observable<Buffer>;
  ref(): void;
  unref(): void;
}
