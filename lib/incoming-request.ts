import { AsyncSubject, Observable } from 'rxjs';

import { reportingAll } from './broadcast';
import type { Connection } from './connection';
import { toBuffer, type Data } from './data';
import { createError } from './errors';
import { EMPTY, encodeRemoteError, FrameKind } from './protocol';

/** How an IncomingRequest reaches the channel; implemented by Channel. */
export interface ResponseSink {
  sendResponse(kind: number, id: number, data: Buffer): void;
  /** A response that will not be sent (the caller cancelled): a loan in it goes back to the pool. */
  unsent(data: Data): void;
  /** The request ended (completed, failed or cancelled): forget it. */
  finished(id: number): void;
}

/** @internal Told when the caller cancels a request: how handleWith stops a handler. */
export interface CancelWatcher {
  requestCancelled(): void;
}

/**
 * A request that arrived from the peer. Answer it once with respond(), or stream with
 * next() … complete(), or fail it with error(). When the caller cancels (unsubscribes, times
 * out, goes away), cancelled$ emits, signal aborts, and further answers are ignored.
 */
export class IncomingRequest {
  private ended = false;
  private cancelledFlag = false;
  // Made when first asked for: most requests are answered without either, and a request
  // stream at full speed would otherwise allocate both for each one.
  private cancelSubject: AsyncSubject<void> | undefined;
  private cancelled$Value: Observable<void> | undefined;
  private abortController: AbortController | undefined;
  private cancelWatchers: CancelWatcher[] | undefined;

  constructor(
    /** The requester's id for this request. */
    readonly id: number,
    readonly data: Buffer,
    private readonly sink: ResponseSink,
    /** A server of many clients: the client that sent it (undefined on a client, or a server of one). */
    readonly client?: Connection,
  ) {}

  get cancelled(): boolean {
    return this.cancelledFlag;
  }

  /** Emits once, then completes, when the caller cancels; late subscribers still get it. */
  get cancelled$(): Observable<void> {
    if (this.cancelled$Value === undefined) {
      const subject = new AsyncSubject<void>();
      if (this.cancelledFlag) subject.next();
      if (this.finished) subject.complete();
      this.cancelSubject = subject;
      this.cancelled$Value = subject.asObservable();
    }
    return this.cancelled$Value;
  }

  /** Aborted when the caller cancels: pass it to fetch(), timers, child processes… */
  get signal(): AbortSignal {
    if (this.abortController === undefined) {
      this.abortController = new AbortController();
      if (this.cancelledFlag) this.abortController.abort(this.cancelReason());
    }
    return this.abortController.signal;
  }

  /** True once the response has completed, failed, or the caller cancelled. */
  get finished(): boolean {
    return this.ended || this.cancelledFlag;
  }

  /** Answers with one value and completes. */
  respond(data: Data): void {
    if (this.checkOpen('respond')) {
      this.sink.unsent(data);
      return;
    }
    const payload = toBuffer(data, 'response data');
    this.sink.sendResponse(FrameKind.RESPONSE, this.id, payload);
    this.end(FrameKind.COMPLETE, EMPTY);
  }

  /** Sends one value of a streamed response. */
  next(data: Data): void {
    if (this.checkOpen('next')) {
      this.sink.unsent(data);
      return;
    }
    this.sink.sendResponse(FrameKind.RESPONSE, this.id, toBuffer(data, 'response data'));
  }

  /** Ends a streamed response. */
  complete(): void {
    if (this.checkOpen('complete')) return;
    this.end(FrameKind.COMPLETE, EMPTY);
  }

  /** Fails the request: the caller gets ERR_REMOTE with this error's message and code. */
  error(err: unknown): void {
    if (this.checkOpen('error')) return;
    this.end(FrameKind.ERROR, encodeRemoteError(err));
  }

  /** @internal The caller cancelled, or the channel closed or lost its peer. */
  cancel(): void {
    if (this.finished) return;
    this.cancelledFlag = true;
    this.sink.finished(this.id);
    this.abortController?.abort(this.cancelReason());
    // A copy: a watcher unwatches as it is told. What a handler's teardown or a cancelled$
    // subscriber throws is reported; the others are still told, and the channel goes on.
    for (const watcher of this.cancelWatchers?.slice() ?? []) reportingAll(() => watcher.requestCancelled());
    const subject = this.cancelSubject;
    if (subject !== undefined) {
      reportingAll(() => subject.next());
      reportingAll(() => subject.complete());
    }
  }

  /** @internal Calls `watcher.requestCancelled()` when the caller cancels, until unwatched. */
  watchCancel(watcher: CancelWatcher): void {
    (this.cancelWatchers ??= []).push(watcher);
  }

  /** @internal */
  unwatchCancel(watcher: CancelWatcher): void {
    const watchers = this.cancelWatchers;
    if (watchers === undefined) return;
    const at = watchers.indexOf(watcher);
    if (at >= 0) watchers.splice(at, 1);
  }

  /** @internal Answered for the channel itself (no handler). */
  rejectUnhandled(message: string): void {
    this.end(FrameKind.ERROR, encodeRemoteError(createError('ERR_NO_HANDLER', message)));
  }

  // True if the call should be ignored (cancelled); throws if the response already ended.
  private checkOpen(what: string): boolean {
    if (this.cancelledFlag) return true;
    if (this.ended) {
      throw createError('ERR_REQUEST_FINISHED', `${what}() on request ${this.id}, whose response has already ended`);
    }
    return false;
  }

  private end(kind: number, payload: Buffer): void {
    // Sent first: if sending throws, the request is still open and can be answered again.
    this.sink.sendResponse(kind, this.id, payload);
    this.ended = true;
    this.sink.finished(this.id);
    this.cancelSubject?.complete();
  }

  private cancelReason(): Error {
    return createError('ERR_REQUEST_FINISHED', `request ${this.id} was cancelled`);
  }
}
