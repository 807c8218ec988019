import { asyncScheduler, config, Observable, Subject, type Subscriber } from 'rxjs';

/**
 * A hot stream with the contract of an RxJS `Subject`: each value goes to the subscribers of
 * the moment, and a subscriber that comes after the end gets the end (error or complete).
 *
 * Why not a Subject: RxJS 7's CommonJS build (what Node loads) is ES5, and its `Subject.next`
 * allocates a closure and an iterator for every value. At millions of notifications a second
 * that was a fifth of the receiving process's time; this is a plain loop.
 */
export class Broadcast<T> {
  /** Replaced, never mutated, so a loop in next() is not disturbed by (un)subscribes it causes. */
  private subscribers: readonly Subscriber<T>[] = [];
  private end: { error: unknown } | 'complete' | undefined;

  readonly observable: Observable<T> = new Observable<T>((subscriber) => {
    const end = this.end;
    if (end === 'complete') {
      subscriber.complete();
      return undefined;
    }
    if (end !== undefined) {
      subscriber.error(end.error);
      return undefined;
    }
    this.subscribers = [...this.subscribers, subscriber];
    return () => {
      this.subscribers = this.subscribers.filter((s) => s !== subscriber);
    };
  });

  /** Whether anyone is subscribed. */
  get observed(): boolean {
    return this.subscribers.length > 0;
  }

  /**
   * Hands `value` to every current subscriber. One that unsubscribes during the loop gets
   * nothing more (an RxJS Subscriber ignores values once stopped); one that subscribes during
   * it starts with the next value. After the end, does nothing.
   */
  next(value: T): void {
    // Checked here too, so the usual case allocates no closure per value.
    if (config.useDeprecatedSynchronousErrorHandling) {
      reportingErrors(() => this.deliver(value));
      return;
    }
    this.deliver(value);
  }

  error(error: unknown): void {
    reportingErrors(() => this.finish({ error }, (s) => s.error(error)));
  }

  complete(): void {
    reportingErrors(() => this.finish('complete', (s) => s.complete()));
  }

  private deliver(value: T): void {
    const subscribers = this.subscribers;
    for (let i = 0; i < subscribers.length; i++) {
      try {
        subscribers[i].next(value);
      } catch (err) {
        // A subscription that ended on this value (take(1)) and whose finalizer threw: RxJS
        // throws that UnsubscriptionError here. Reported; the others still get the value.
        reportUnhandled(err);
      }
    }
  }

  private finish(end: { error: unknown } | 'complete', tell: (s: Subscriber<T>) => void): void {
    if (this.end !== undefined) return;
    this.end = end;
    const subscribers = this.subscribers;
    this.subscribers = [];
    for (const s of subscribers) {
      try {
        tell(s);
      } catch (err) {
        // A finalizer that threw as the subscription ended (see deliver()).
        reportUnhandled(err);
      }
    }
  }
}

/**
 * Under RxJS's deprecated synchronous error handling, a subscriber's error is kept only inside
 * RxJS's error context and dropped outside it. The public way into that context is a Subject's
 * next(), which opens one and rethrows what was kept when it closes; what it rethrows is
 * reported as RxJS reports such errors otherwise (config.onUnhandledError, or thrown on a
 * timer): never lost.
 */
export function reportingErrors(run: () => void): void {
  if (!config.useDeprecatedSynchronousErrorHandling) {
    run();
    return;
  }
  const context = new Subject<void>();
  context.subscribe(run);
  try {
    context.next();
  } catch (err) {
    reportUnhandled(err);
  }
}

/**
 * Runs `run`, which calls into a user's code (a subscriber, a teardown: an RxJS teardown that
 * throws makes unsubscribe() and a Subscriber's error() and complete() throw an
 * UnsubscriptionError), and reports what it throws as RxJS reports such errors instead of
 * letting it break the channel's own work (a read of the rings, a peer's end).
 */
export function reportingAll(run: () => void): void {
  try {
    reportingErrors(run);
  } catch (err) {
    reportUnhandled(err);
  }
}

/** Reports `err` as RxJS reports an unhandled error: config.onUnhandledError, else thrown on a timer. */
export function reportUnhandled(err: unknown): void {
  // On RxJS's own scheduler, as RxJS reports them: a TestScheduler's virtual time applies.
  asyncScheduler.schedule(() => {
    const onUnhandledError = config.onUnhandledError;
    if (onUnhandledError) onUnhandledError(err);
    else throw err;
  });
}
