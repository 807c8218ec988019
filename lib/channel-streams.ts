// The hot streams a channel offers, fed by its peer link(s): notifications (each, or in
// batches), requests, a server's clients and the ones it dropped, and the channel's state.
import type { Buffer } from 'node:buffer';

import { BehaviorSubject, Observable } from 'rxjs';

import { Broadcast, reportingAll } from './broadcast';
import type { Connection } from './connection';
import type { ShmChannelError } from './errors';
import type { IncomingRequest } from './incoming-request';
import type { NotificationBatch } from './notification-batch';

/**
 * 'idle' before open(); a server is 'open' until a client says hello, then 'connected';
 * 'peer-lost' when the peer leaves or dies, or a server drops a client that broke the protocol (a
 * server then returns to 'open' once the client left); 'closed' at the end. A server of many
 * clients is 'connected' while any client is, and passes through 'peer-lost' back to 'open'
 * when the last one leaves.
 */
export type ChannelState = 'idle' | 'open' | 'connected' | 'peer-lost' | 'closed';

export class ChannelStreams {
  readonly notifications = new Broadcast<Buffer>();
  readonly batches = new Broadcast<NotificationBatch>();
  readonly requests = new Broadcast<IncomingRequest>();
  readonly clientErrors = new Broadcast<ShmChannelError>();
  /** A server of many clients: each client, once it said hello. */
  readonly clients = new Broadcast<Connection>();
  private readonly stateSubject = new BehaviorSubject<ChannelState>('idle');

  /** The current state, replayed to each new subscriber; a late one still learns 'closed'. */
  readonly state$: Observable<ChannelState> = new Observable<ChannelState>((subscriber) => {
    // A completed BehaviorSubject replays nothing.
    if (this.stateSubject.value === 'closed') {
      subscriber.next('closed');
      subscriber.complete();
      return undefined;
    }
    return this.stateSubject.subscribe(subscriber);
  });

  get state(): ChannelState {
    return this.stateSubject.value;
  }

  /** Moves to `state` unless it is the state already. */
  enter(state: ChannelState): void {
    // A subscriber that throws (RxJS's deprecated synchronous error handling rethrows it here)
    // is reported, never thrown into the channel's work: the state changes all the same.
    if (this.stateSubject.value !== state) reportingAll(() => this.stateSubject.next(state));
  }

  /** A server dropped a client for `error`: told on clientErrors$, else as a process warning, never silently. */
  clientDropped(name: string, error: ShmChannelError, client = 'its client'): void {
    if (this.clientErrors.observed) {
      this.clientErrors.next(error);
    } else {
      process.emitWarning(`shmchannel: server ${name} dropped ${client}: ${error.message}`, {
        code: 'SHMCHANNEL_CLIENT_DROPPED',
      });
    }
  }

  /** The channel failed: the data streams end with `error` (state$ ends with the close). */
  fail(error: ShmChannelError): void {
    this.notifications.error(error);
    this.batches.error(error);
    this.requests.error(error);
  }

  /** The channel closed: every stream completes, state$ after saying 'closed'. */
  close(): void {
    this.notifications.complete();
    this.batches.complete();
    this.requests.complete();
    this.clientErrors.complete();
    this.clients.complete();
    reportingAll(() => this.stateSubject.next('closed'));
    reportingAll(() => this.stateSubject.complete());
  }
}
