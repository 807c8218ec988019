// The requests this end sent and waits on: their ids and subscribers.
import type { Buffer } from 'node:buffer';

import type { Subscriber } from 'rxjs';

import type { ShmChannelError } from './errors';

export class PendingRequests {
  private readonly byId = new Map<number, Subscriber<Buffer>>();
  private lastId = 0;

  /** Registers a request under a fresh id: 32 bits, never 0, never one still in flight. */
  add(subscriber: Subscriber<Buffer>): number {
    // At most 2^32-1 can be in flight, so a free id exists.
    do {
      this.lastId = this.lastId === 0xffffffff ? 1 : this.lastId + 1;
    } while (this.byId.has(this.lastId));
    this.byId.set(this.lastId, subscriber);
    return this.lastId;
  }

  /** The subscriber of request `id`, if it is still pending. */
  get(id: number): Subscriber<Buffer> | undefined {
    return this.byId.get(id);
  }

  /** Ends request `id` here (its response ended, or it was given up): its subscriber, if it was pending. */
  take(id: number): Subscriber<Buffer> | undefined {
    const subscriber = this.byId.get(id);
    if (subscriber !== undefined) this.byId.delete(id);
    return subscriber;
  }

  /** Ends every pending request with an error of `makeError`, each its own. */
  failAll(makeError: () => ShmChannelError): void {
    const subscribers = [...this.byId.values()];
    this.byId.clear();
    for (const s of subscribers) s.error(makeError());
  }
}
