// A peer started by spec/helpers/peer.ts, as a child process or as a worker thread: opens a
// Channel (and a TypedChannel over it, for a typed peer) as its config says, then obeys commands
// from the test. Every error it meets is reported to the test, never swallowed.
import { parentPort, threadId, workerData } from 'node:worker_threads';

import {
  defer,
  finalize,
  interval,
  lastValueFrom,
  map,
  NEVER,
  Observable,
  of,
  range,
  throwError,
  timer,
  tap,
  type Subscription,
} from 'rxjs';

import {
  Channel,
  codecs,
  handleTypedWith,
  handleWith,
  TypedChannel,
  type Codec,
  type Data,
  type IncomingRequest,
} from '../../lib/index';
import type {
  CodecName,
  ErrorReport,
  FloodResult,
  HandlerSpec,
  HandlerStats,
  ParentMessage,
  PayloadSpec,
  PeerCommand,
  PeerConfig,
  PeerEvent,
  PeerMessage,
  RequestManyResult,
} from './peer-messages';
import { floodMessage, patternBuffer, sha256, summarize } from './payload';

/** The way to the test: the IPC channel of a child process, or the port of a worker thread. */
interface TestLink {
  config: PeerConfig;
  send(message: PeerMessage): void;
  onCommand(listener: (message: ParentMessage) => void): void;
  /** The channel could not open: let the peer end once its report is out. */
  leave(): void;
}

function testLink(): TestLink {
  const port = parentPort;
  if (port !== null) {
    // A worker ends with its thread (terminate()), so there is no parent to lose.
    return {
      config: workerData as PeerConfig,
      send: (message) => port.postMessage(message),
      onCommand: (listener) => port.on('message', listener),
      leave: () => undefined,
    };
  }
  // The test process went away: close properly so no segment is left behind.
  process.on('disconnect', () => void channel?.close().finally(() => process.exit(0)));
  return {
    config: JSON.parse(process.argv[2]) as PeerConfig,
    send: (message) => process.send?.(message),
    onCommand: (listener) => process.on('message', listener),
    leave: () => process.disconnect(),
  };
}

const link = testLink();
const config = link.config;
let channel: Channel;
/** A typed peer's channel; then payloads and what arrives are values, not bytes. */
let typed: TypedChannel<unknown, unknown, unknown> | undefined;
const notifications: unknown[] = [];
const notificationWaiters: { count: number; resolve: () => void }[] = [];
let handlerSubscription: Subscription | undefined;
const stats: HandlerStats = { arrivals: [], completions: [], texts: [], idCollisions: 0, maxInFlight: 0 };
const inFlight = new Set<number>();
/** Zero-copy: loans kept unsent, and (after hold-views) borrowed messages kept unreleased. */
const held: Buffer[] = [];
let holdViews = false;

// What each codec cannot encode.
const UNENCODABLE: Record<CodecName, unknown> = { raw: 'not a buffer', utf8: 42, json: 10n, structuredClone: () => 1 };

function emit(event: PeerEvent): void {
  link.send({ type: 'event', ...event });
}

function report(err: unknown): ErrorReport {
  const e = err as Partial<ErrorReport> & { message?: string };
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: e?.code,
    remoteCode: e?.remoteCode,
    errno: e?.errno,
    ownerPid: e?.ownerPid,
  };
}

function payload(spec: PayloadSpec): Buffer {
  if (spec.size !== undefined) return patternBuffer(spec.size, spec.seed ?? 0);
  return Buffer.from(spec.text ?? '', 'utf8');
}

/** What the test gets for a message this peer sent or received: the value, or a Summary of the bytes. */
function described(message: unknown): unknown {
  return typed === undefined ? summarize(message as Buffer) : message;
}

/** A message received: described, then (with `borrow`) released, or kept after hold-views. */
function consumed(message: unknown): unknown {
  const description = described(message);
  if (holdViews) held.push(message as Buffer);
  else releaseIfBorrowed(message);
  return description;
}

/** With `borrow`, gives a message back (nothing happens for one that came by copy). */
function releaseIfBorrowed(message: unknown): void {
  if (config.options?.borrow !== true || !Buffer.isBuffer(message)) return;
  channel.release(message);
}

/** A loan of this channel holding `parts` one after the other. */
function loanOf(...parts: Buffer[]): Buffer {
  const loan = channel.loan(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) at += p.copy(loan, at);
  return loan;
}

function answer(spec: HandlerSpec, data: Buffer): Observable<Data> {
  const text = data.toString('utf8');
  switch (spec.kind) {
    case 'echo':
      return of(data);
    case 'upper':
      return of(text.toUpperCase());
    case 'stream':
      return range(0, spec.count).pipe(map((i) => `${text}#${i}`));
    case 'error':
      return throwError(() => Object.assign(new Error(spec.message), { code: spec.code }));
    case 'fail-on':
      return text === spec.match ? throwError(() => new Error(spec.message)) : of(data);
    case 'slow':
      return timer(spec.ms).pipe(map(() => data));
    case 'random-delay':
      return timer(Math.floor(Math.random() * spec.maxMs)).pipe(map(() => data));
    case 'never':
      return NEVER;
    case 'ticks':
      return interval(spec.ms).pipe(map((i) => `${text}#${i}`));
    case 'sha256':
      return of(`${data.length}:${sha256(data)}`);
    case 'generate': {
      const { size, seed } = JSON.parse(text) as { size: number; seed: number };
      return of(patternBuffer(size, seed));
    }
    case 'loan-echo': {
      const loan = loanOf(data);
      releaseIfBorrowed(data);
      return of(loan);
    }
    case 'loan-stream':
      return range(0, spec.count).pipe(
        map((i) => loanOf(Buffer.from(`${i}:`), data)),
        finalize(() => releaseIfBorrowed(data)),
      );
    case 'respond-twice':
    case 'unencodable':
      throw new Error(`${spec.kind} is not a handleWith handler`);
  }
}

function typedAnswer(spec: HandlerSpec, value: unknown): Observable<unknown> {
  switch (spec.kind) {
    case 'echo':
      return of(value);
    case 'stream':
      return range(0, spec.count).pipe(map((index) => ({ index, value })));
    case 'ticks':
      return interval(spec.ms).pipe(map(() => value));
    case 'unencodable':
      return of(UNENCODABLE[config.codec ?? 'raw']);
    default:
      throw new Error(`${spec.kind} is not a handler of a typed peer`);
  }
}

/** Counts the request in and out, and reports a teardown that came before the handler ended. */
function tracked<T>(request: IncomingRequest, inner: Observable<T>): Observable<T> {
  if (inFlight.has(request.id)) stats.idCollisions += 1;
  inFlight.add(request.id);
  stats.maxInFlight = Math.max(stats.maxInFlight, inFlight.size);
  stats.arrivals.push(request.id);
  stats.texts.push(request.data.length <= 1024 ? request.data.toString('utf8') : undefined);
  request.cancelled$.subscribe(() => emit({ event: 'cancelled', requestId: request.id, text: stats.texts.at(-1) }));
  return new Observable<T>((subscriber) => {
    let ended = false;
    const inner$ = defer(() => inner)
      .pipe(
        finalize(() => {
          inFlight.delete(request.id);
          stats.completions.push(request.id);
        }),
      )
      .subscribe({
        next: (value) => subscriber.next(value),
        error: (err: unknown) => {
          ended = true;
          subscriber.error(err);
        },
        complete: () => {
          ended = true;
          subscriber.complete();
        },
      });
    return () => {
      inner$.unsubscribe();
      if (!ended) emit({ event: 'unsubscribed', requestId: request.id });
    };
  });
}

function handle(spec: HandlerSpec): void {
  // A handler this peer cannot run fails the command, not the requests.
  if (
    typed === undefined ? spec.kind === 'unencodable' : !['echo', 'stream', 'ticks', 'unencodable'].includes(spec.kind)
  ) {
    throw new Error(`a ${typed === undefined ? 'byte' : 'typed'} peer has no ${spec.kind} handler`);
  }
  handlerSubscription?.unsubscribe();
  const onError = (err: unknown) => emit({ event: 'stream-error', stream: 'requests$', error: report(err) });
  if (typed !== undefined) {
    handlerSubscription = typed.requests$
      .pipe(handleTypedWith((value, request) => tracked(request.raw, typedAnswer(spec, value))))
      .subscribe({ error: onError });
    return;
  }
  if (spec.kind === 'respond-twice') {
    handlerSubscription = channel.requests$.subscribe({
      next: (request) => {
        request.respond(request.data);
        try {
          request.respond(request.data);
          emit({ event: 'respond-twice', requestId: request.id });
        } catch (err) {
          emit({ event: 'respond-twice', requestId: request.id, code: report(err).code });
        }
      },
      error: onError,
    });
    return;
  }
  handlerSubscription = channel.requests$
    .pipe(handleWith((data, request) => tracked(request, answer(spec, data))))
    .subscribe({ error: onError });
}

function collect(count: number): Promise<unknown[]> {
  if (notifications.length >= count) return Promise.resolve(notifications);
  return new Promise((resolve) => notificationWaiters.push({ count, resolve: () => resolve(notifications) }));
}

/** A request refused with ERR_QUEUE_FULL was never sent: like a notification, retry it. */
async function requestPastBackpressure(text: string): Promise<Buffer> {
  for (;;) {
    try {
      return await lastValueFrom(channel.request(text));
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_QUEUE_FULL') throw err;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** Writes `count` flood messages as fast as backpressure allows, with requests in between. */
async function flood(count: number, size: number, requests: number): Promise<FloodResult> {
  const message = Buffer.alloc(8 + size);
  const result: FloodResult = {
    sent: 0,
    queueFullRetries: 0,
    maxQueuedBytes: 0,
    maxRssBytes: 0,
    requestsAnswered: 0,
    requestErrors: [],
  };
  const every = Math.max(1, Math.floor(count / Math.max(1, requests)));
  const answers: Promise<void>[] = [];
  for (let seq = 0; seq < count;) {
    if (requests > 0 && seq % every === 0 && answers.length < requests) {
      const text = `r${seq}`;
      answers.push(
        requestPastBackpressure(text).then(
          (reply) => {
            if (reply.toString() === text) result.requestsAnswered++;
            else result.requestErrors.push({ message: `request ${text} got ${reply.toString()}` });
          },
          (err: unknown) => void result.requestErrors.push(report(err)),
        ),
      );
    }
    floodMessage(message, seq);
    try {
      channel.notify(message);
      seq++;
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_QUEUE_FULL') throw err;
      result.queueFullRetries++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    result.maxQueuedBytes = Math.max(result.maxQueuedBytes, channel.queuedBytes);
    if (seq % 8192 === 0) result.maxRssBytes = Math.max(result.maxRssBytes, process.memoryUsage.rss());
  }
  await Promise.all(answers);
  result.sent = count;
  return result;
}

function notify(command: Extract<PeerCommand, { cmd: 'notify' }>): { sent: unknown[] } {
  if (typed !== undefined) {
    typed.notify(command.value);
    return { sent: [command.value] };
  }
  const sent: unknown[] = [];
  if (command.sizes !== undefined) {
    command.sizes.forEach((size, i) => {
      const data = patternBuffer(size, i);
      channel.notify(data);
      sent.push(summarize(data));
    });
    return { sent };
  }
  const data = payload(command);
  if (command.count === undefined) {
    channel.notify(data);
    return { sent: [summarize(data)] };
  }
  for (let i = 0; i < command.count; i++) {
    const numbered = Buffer.from(`${data.toString('utf8')}#${i}`, 'utf8');
    channel.notify(numbered);
    sent.push(summarize(numbered));
  }
  return { sent };
}

async function request(
  command: Extract<PeerCommand, { cmd: 'request' }>,
  data: Buffer = payload(command),
): Promise<unknown> {
  // Values are kept as they arrive: a response may send some, then fail.
  const values: unknown[] = [];
  const options = command.timeout === undefined ? {} : { timeout: command.timeout };
  const response$: Observable<unknown> =
    typed === undefined ? channel.request(data, options) : typed.request(command.value, options);
  try {
    await lastValueFrom(response$.pipe(tap((v) => values.push(consumed(v)))), { defaultValue: undefined });
    return { values };
  } catch (err) {
    return { values, error: report(err) };
  }
}

/** `count` requests in flight together; what each was answered, in request order. */
async function requestMany(count: number, prefix: string): Promise<RequestManyResult> {
  const result: RequestManyResult = { answers: new Array<string>(count).fill(''), errors: new Array(count) };
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      try {
        const value = await lastValueFrom(channel.request(`${prefix}${i}`));
        result.answers[i] = value.toString('utf8');
      } catch (err) {
        result.errors[i] = report(err).code ?? 'unknown';
      }
    }),
  );
  return result;
}

async function run(command: PeerCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'notify':
      return notify(command);
    case 'request':
      return request(command);
    case 'handle':
      handle(command.handler);
      return {};
    case 'unhandle':
      handlerSubscription?.unsubscribe();
      handlerSubscription = undefined;
      return {};
    case 'collect':
      return { notifications: await collect(command.count) };
    case 'stats':
      return stats;
    case 'flood':
      return flood(command.count, command.size, command.requests);
    case 'close':
      await channel.close();
      return {};
    case 'request-many':
      return requestMany(command.count, command.prefix);
    case 'loan-notify': {
      const sent: unknown[] = [];
      const lengthsAfter: number[] = [];
      for (let i = 0; i < (command.count ?? 1); i++) {
        const loan = loanOf(patternBuffer(command.size, (command.seed ?? 0) + i));
        const message = command.slice === undefined ? loan : loan.subarray(...command.slice);
        sent.push(summarize(message));
        channel.notify(message);
        lengthsAfter.push(loan.length);
      }
      return { sent, lengthsAfter };
    }
    case 'loan-request':
      return request({ cmd: 'request' }, loanOf(payload(command)));
    case 'hold-loans':
      for (let i = 0; i < command.count; i++) held.push(channel.loan(command.size));
      return {};
    case 'hold-views':
      holdViews = true;
      return {};
    case 'release-held': {
      const count = held.length;
      for (const buffer of held.splice(0)) channel.release(buffer);
      holdViews = false;
      return { count };
    }
    case 'loan-once':
      channel.release(channel.loan(command.size));
      return {};
  }
}

async function main(): Promise<void> {
  process.on('uncaughtException', (err) => {
    emit({ event: 'fatal', error: report(err) });
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    emit({ event: 'fatal', error: report(err) });
    process.exit(1);
  });

  if (config.startDelayMs !== undefined) await new Promise((r) => setTimeout(r, config.startDelayMs));
  channel = new Channel(config.name, config.mode, config.options);
  if (config.codec !== undefined) {
    const codec = codecs[config.codec] as Codec<unknown>;
    typed = new TypedChannel(channel, { notification: codec, request: codec, response: codec });
    typed.codecErrors$.subscribe((err) => emit({ event: 'codec-error', error: report(err) }));
  }
  channel.state$.subscribe((state) => emit({ event: 'state', state }));
  const notifications$: Observable<unknown> = typed?.notifications$ ?? channel.notifications$;
  notifications$.subscribe({
    next: (message) => {
      notifications.push(consumed(message));
      for (const waiter of notificationWaiters.filter((w) => notifications.length >= w.count)) {
        notificationWaiters.splice(notificationWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    },
    error: (err: unknown) => emit({ event: 'stream-error', stream: 'notifications$', error: report(err) }),
  });
  try {
    await channel.open();
  } catch (err) {
    emit({ event: 'open-failed', error: report(err) });
    link.leave();
    return;
  }
  link.onCommand((message) => {
    run(message.command).then(
      (result) => link.send({ type: 'reply', seq: message.seq, result }),
      (err: unknown) => link.send({ type: 'reply', seq: message.seq, error: report(err) }),
    );
  });
  emit({ event: 'ready', pid: process.pid, threadId });
}

void main();
