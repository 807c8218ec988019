// The requests in flight on a channel: those this end sent and waits on (ids, subscribers,
// timeouts, cancels), and those the peer sent that a handler is answering.
import type { Buffer } from 'node:buffer';
import { debuglog } from 'node:util';

import { Observable, type Subscriber } from 'rxjs';

import { reportUnhandled } from './broadcast';
import { createError, type ShmChannelError } from './errors';
import type { IncomingRequest } from './incoming-request';
import { decodeRemoteError, protocolError } from './protocol';

const debug = debuglog('shmchannel');

/** What a request needs of its channel. */
export interface RequestSender {
  readonly name: string;
  /** Throws the error that stops a request now (closed, not open, too large, no peer). */
  checkCanRequest(payload: Buffer): void;
  sendRequest(id: number, payload: Buffer): void;
  /** Tells the handler that the caller gave up on request `id`; a no-op once closed. */
  sendCancel(id: number): void;
}

export class RequestTable {
  private readonly outgoing = new Map<number, Subscriber<Buffer>>();
  private readonly incoming = new Map<number, IncomingRequest>();
  private lastId = 0;

  constructor(private readonly sender: RequestSender) {}

  /**
   * One request per subscription, emitting every value of its response. Whatever stops it is
   * reported to the subscriber (never thrown); unsubscribing before the end cancels it at the
   * handler, and `timeout` (ms) fails it with ERR_TIMEOUT, which unsubscribes too.
   */
  request(payload: Buffer, timeout: number | undefined): Observable<Buffer> {
    const sender = this.sender;
    return new Observable<Buffer>((subscriber) => {
      let id: number;
      try {
        sender.checkCanRequest(payload);
        id = this.add(subscriber);
        try {
          sender.sendRequest(id, payload);
        } catch (err) {
          this.outgoing.delete(id);
          throw err;
        }
      } catch (err) {
        subscriber.error(err);
        return undefined;
      }
      const timer =
        timeout === undefined
          ? undefined
          : setTimeout(() => {
              try {
                subscriber.error(
                  createError('ERR_TIMEOUT', `request ${id} on ${sender.name} timed out after ${timeout} ms`),
                );
              } catch (err) {
                reportUnhandled(err);
              }
            }, timeout);
      return () => {
        if (timer !== undefined) clearTimeout(timer);
        // Still pending here means the caller gave up before the response ended: tell the handler.
        if (this.outgoing.get(id) === subscriber) {
          this.outgoing.delete(id);
          try {
            sender.sendCancel(id);
          } catch (err) {
            // Teardown must not throw; a failed write has already failed the channel.
            debug('%s: cancel of %d not sent: %s', sender.name, id, (err as Error).message);
          }
        }
      };
    });
  }

  /** A value of the response to request `id` (ignored if it is no longer pending). */
  /** A response to request `id`; false if nobody waits for it (any more). */
  response(id: number, data: Buffer): boolean {
    const request = this.outgoing.get(id);
    if (request === undefined) return false;
    try {
      request.next(data);
    } catch (err) {
      // An operator downstream ended (take(1)) and a finalizer of the caller's threw.
      reportUnhandled(err);
    }
    return true;
  }

  complete(id: number): void {
    const request = this.take(id);
    try {
      request?.complete();
    } catch (err) {
      reportUnhandled(err);
    }
  }

  /** The handler failed request `id`: `data` is its ERROR payload. */
  remoteError(id: number, data: Buffer): void {
    const request = this.take(id);
    try {
      request?.error(decodeRemoteError(data));
    } catch (err) {
      reportUnhandled(err);
    }
  }

  /** The peer sent request `id`: ERR_PROTOCOL if a request of that id is still being answered. */
  checkIncomingId(id: number): void {
    if (this.incoming.has(id)) throw protocolError(`request id ${id} reused while in flight`);
  }

  /** A request the peer sent, now being handled. */
  handling(request: IncomingRequest): void {
    this.incoming.set(request.id, request);
  }

  /** The peer cancelled request `id`. */
  cancelled(id: number): void {
    this.incoming.get(id)?.cancel();
  }

  /** The answer to request `id` ended. */
  answered(id: number): void {
    this.incoming.delete(id);
  }

  /** Fails every pending request with an error of `makeError`, and cancels every request being handled. */
  endAll(makeError: () => ShmChannelError): void {
    this.failPending(makeError);
    const incoming = [...this.incoming.values()];
    this.incoming.clear();
    for (const r of incoming) r.cancel();
  }

  /** Fails every pending request with an error of `makeError`, each its own. */
  failPending(makeError: () => ShmChannelError): void {
    const subscribers = [...this.outgoing.values()];
    this.outgoing.clear();
    for (const s of subscribers) {
      try {
        s.error(makeError());
      } catch (err) {
        // A finalizer of the caller's threw (an UnsubscriptionError): reported, and the others still fail.
        reportUnhandled(err);
      }
    }
  }

  /** Registers a request under a fresh id: 32 bits, never 0, never one still in flight. */
  private add(subscriber: Subscriber<Buffer>): number {
    // At most 2^32-1 can be in flight, so a free id exists.
    do {
      this.lastId = this.lastId === 0xffffffff ? 1 : this.lastId + 1;
    } while (this.outgoing.has(this.lastId));
    this.outgoing.set(this.lastId, subscriber);
    return this.lastId;
  }

  private take(id: number): Subscriber<Buffer> | undefined {
    const subscriber = this.outgoing.get(id);
    if (subscriber !== undefined) this.outgoing.delete(id);
    return subscriber;
  }
}
