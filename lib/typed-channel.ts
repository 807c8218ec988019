import { Buffer } from 'node:buffer';

import { map, mergeMap, Observable, share, Subject } from 'rxjs';

import type { Channel, RequestOptions } from './channel';
import { codecs, decodeWith, encodeWith, type Codec } from './codecs';
import type { ShmChannelError } from './errors';
import type { IncomingRequest } from './incoming-request';

/** The codec of each kind of message; an omitted one is `codecs.raw` (Buffers). */
export interface TypedChannelCodecs<N, Req, Res> {
  notification?: Codec<N>;
  request?: Codec<Req>;
  response?: Codec<Res>;
}

/**
 * A request that arrived on a {@link TypedChannel}: `data` is decoded, and `respond()` and
 * `next()` take values that the response codec encodes. A value the codec cannot encode
 * throws `ERR_CODEC` and sends nothing; the request stays open, so it can still be failed
 * with `error()`. The untyped request is `raw`.
 */
export class TypedIncomingRequest<Req, Res> {
  constructor(
    readonly raw: IncomingRequest,
    /** The decoded request. */
    readonly data: Req,
    private readonly codec: Codec<Res>,
  ) {}

  /** Emits once, then completes, when the caller cancels; late subscribers still get it. */
  get cancelled$(): Observable<void> {
    return this.raw.cancelled$;
  }

  /** The requester's id for this request. */
  get id(): number {
    return this.raw.id;
  }

  get cancelled(): boolean {
    return this.raw.cancelled;
  }

  /** Aborted when the caller cancels. */
  get signal(): AbortSignal {
    return this.raw.signal;
  }

  /** True once the response has completed, failed, or the caller cancelled. */
  get finished(): boolean {
    return this.raw.finished;
  }

  /** Answers with one value and completes. */
  respond(value: Res): void {
    this.raw.respond(this.encode(value));
  }

  /** Sends one value of a streamed response. */
  next(value: Res): void {
    this.raw.next(this.encode(value));
  }

  /** Ends a streamed response. */
  complete(): void {
    this.raw.complete();
  }

  /** Fails the request: the caller gets ERR_REMOTE with this error's message and code. */
  error(err: unknown): void {
    this.raw.error(err);
  }

  /** @internal A response value as bytes; ERR_CODEC if the codec refuses it. */
  encode(value: Res): Buffer {
    return encodeWith(this.codec, value, `response to request ${this.raw.id}`);
  }
}

/**
 * A {@link Channel} that sends and receives typed values through codecs: one for
 * notifications (`N`), one for requests (`Req`) and one for responses (`Res`). Both ends
 * must use the same codecs. It uses only the Channel's public API; open and close the
 * Channel itself (`typed.channel`).
 *
 * Codec failures are `ERR_CODEC` errors, never crashes:
 * - encoding (`notify`, `request`, `respond`, `next`) throws `ERR_CODEC` synchronously and
 *   sends nothing;
 * - a response that fails to decode fails that `request()` with `ERR_CODEC` and cancels the
 *   request at the handler;
 * - a request that fails to decode is answered with an error of code `ERR_CODEC` (the caller
 *   sees `ERR_REMOTE` with `remoteCode: 'ERR_CODEC'`) and is reported on `codecErrors$`;
 * - a notification that fails to decode is skipped by `notifications$`, which goes on, and
 *   reported on `codecErrors$`.
 * When nobody subscribes to `codecErrors$`, such a failure is reported with a process
 * warning (code `SHMCHANNEL_CODEC`) instead: never dropped silently.
 *
 * ## Example
 * ```ts
 * const server = new Channel('/demo', 'server');
 * const typed = new TypedChannel(server, { request: codecs.json, response: codecs.json });
 * typed.requests$.pipe(handleTypedWith((value) => of({ echo: value }))).subscribe();
 * await server.open();
 * ```
 */
export class TypedChannel<N = Buffer, Req = Buffer, Res = Buffer> {
  /** Every notification that arrives while subscribed, decoded. Completes on close. */
  readonly notifications$: Observable<N>;
  /** Every request that arrives, decoded. With no subscriber, the peer gets ERR_NO_HANDLER. */
  readonly requests$: Observable<TypedIncomingRequest<Req, Res>>;
  /** Incoming notifications and requests that failed to decode (`ERR_CODEC`). Completes on close. */
  readonly codecErrors$: Observable<ShmChannelError>;

  private readonly notificationCodec: Codec<N>;
  private readonly requestCodec: Codec<Req>;
  private readonly responseCodec: Codec<Res>;
  private readonly codecErrorsSubject = new Subject<ShmChannelError>();

  constructor(
    readonly channel: Channel,
    codecsByKind: TypedChannelCodecs<N, Req, Res> = {},
  ) {
    // An omitted codec means its type parameter is left at its default, Buffer.
    this.notificationCodec = codecsByKind.notification ?? (codecs.raw as unknown as Codec<N>);
    this.requestCodec = codecsByKind.request ?? (codecs.raw as unknown as Codec<Req>);
    this.responseCodec = codecsByKind.response ?? (codecs.raw as unknown as Codec<Res>);
    this.codecErrors$ = this.codecErrorsSubject.asObservable();
    channel.state$.subscribe({ complete: () => this.codecErrorsSubject.complete() });

    // share(): each message is decoded once however many subscribe, and the Channel's
    // requests$ is observed only while someone observes ours (else ERR_NO_HANDLER).
    this.notifications$ = channel.notifications$.pipe(
      mergeMap((data) => {
        try {
          return [decodeWith(this.notificationCodec, data, 'notification')];
        } catch (err) {
          this.reportCodecError(err as ShmChannelError);
          return [];
        }
      }),
      share(),
    );
    this.requests$ = channel.requests$.pipe(
      mergeMap((request) => {
        let value: Req;
        try {
          value = decodeWith(this.requestCodec, request.data, `request ${request.id}`);
        } catch (err) {
          this.refuse(request, err as ShmChannelError);
          return [];
        }
        return [new TypedIncomingRequest<Req, Res>(request, value, this.responseCodec)];
      }),
      share(),
    );
  }

  /**
   * Encodes and sends a notification; returns like {@link Channel.notify} (false: await
   * `channel.drained()`). Throws ERR_CODEC (nothing sent) if it cannot be encoded.
   */
  notify(value: N): boolean {
    return this.channel.notify(encodeWith(this.notificationCodec, value, 'notification'));
  }

  /**
   * Like {@link Channel.request}, with typed values: the request is encoded now (ERR_CODEC is
   * thrown synchronously, nothing is sent), each response value is decoded as it arrives (a
   * failure errors the Observable with ERR_CODEC and cancels the request at the handler).
   */
  request(value: Req, options?: RequestOptions): Observable<Res> {
    const payload = encodeWith(this.requestCodec, value, 'request');
    const codec = this.responseCodec;
    return this.channel
      .request(payload, options)
      .pipe(map((data, index) => decodeWith(codec, data, `response value ${index}`)));
  }

  // decodeWith throws only ERR_CODEC errors.
  private refuse(request: IncomingRequest, err: ShmChannelError): void {
    try {
      request.error(err);
    } catch {
      // The channel closed meanwhile: the caller has been failed by that already.
    }
    this.reportCodecError(err);
  }

  private reportCodecError(err: ShmChannelError): void {
    if (this.codecErrorsSubject.observed) {
      this.codecErrorsSubject.next(err);
    } else {
      process.emitWarning(`shmchannel: ${this.channel.name}: ${err.message}`, { code: 'SHMCHANNEL_CODEC' });
    }
  }
}
