// A peer forked by spec/helpers/peer.ts: opens a Channel as told on argv, then obeys commands
// from the test process. Every error it meets is reported to the parent, never swallowed.
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

import { Channel, handleWith, type Data, type IncomingRequest } from '../../lib/index';
import type {
  ErrorReport,
  HandlerSpec,
  HandlerStats,
  ParentMessage,
  PayloadSpec,
  PeerCommand,
  PeerConfig,
  PeerEvent,
  PeerMessage,
  FloodResult,
} from './peer-messages';
import { floodMessage, patternBuffer, sha256, summarize, type Summary } from './payload';

const config = JSON.parse(process.argv[2]) as PeerConfig;
let channel: Channel;
const notifications: Summary[] = [];
const notificationWaiters: { count: number; resolve: () => void }[] = [];
let handlerSubscription: Subscription | undefined;
const stats: HandlerStats = { arrivals: [], completions: [], texts: [], idCollisions: 0, maxInFlight: 0 };
const inFlight = new Set<number>();

function send(message: PeerMessage): void {
  process.send?.(message);
}

function emit(event: PeerEvent): void {
  send({ type: 'event', ...event });
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
    case 'respond-twice':
      throw new Error('respond-twice is not a handleWith handler');
  }
}

/** Counts the request in and out, and reports a teardown that came before the handler ended. */
function tracked(request: IncomingRequest, inner: Observable<Data>): Observable<Data> {
  if (inFlight.has(request.id)) stats.idCollisions += 1;
  inFlight.add(request.id);
  stats.maxInFlight = Math.max(stats.maxInFlight, inFlight.size);
  stats.arrivals.push(request.id);
  stats.texts.push(request.data.length <= 1024 ? request.data.toString('utf8') : undefined);
  request.cancelled$.subscribe(() => emit({ event: 'cancelled', requestId: request.id, text: stats.texts.at(-1) }));
  return new Observable<Data>((subscriber) => {
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
  handlerSubscription?.unsubscribe();
  const onError = (err: unknown) => emit({ event: 'stream-error', stream: 'requests$', error: report(err) });
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

function collect(count: number): Promise<Summary[]> {
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

async function run(command: PeerCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'notify': {
      const sent: Summary[] = [];
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
    case 'request': {
      // Values are kept as they arrive: a response may send some, then fail.
      const values: Summary[] = [];
      const options = command.timeout === undefined ? {} : { timeout: command.timeout };
      try {
        await lastValueFrom(channel.request(payload(command), options).pipe(tap((v) => values.push(summarize(v)))), {
          defaultValue: undefined,
        });
        return { values };
      } catch (err) {
        return { values, error: report(err) };
      }
    }
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
  // The test process went away: close properly so no segment is left behind.
  process.on('disconnect', () => {
    void channel?.close().finally(() => process.exit(0));
  });

  if (config.startDelayMs !== undefined) await new Promise((r) => setTimeout(r, config.startDelayMs));
  channel = new Channel(config.name, config.mode, config.options);
  channel.state$.subscribe((state) => emit({ event: 'state', state }));
  channel.notifications$.subscribe({
    next: (data) => {
      notifications.push(summarize(data));
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
    process.disconnect();
    return;
  }
  process.on('message', (message: ParentMessage) => {
    run(message.command).then(
      (result) => send({ type: 'reply', seq: message.seq, result }),
      (err: unknown) => send({ type: 'reply', seq: message.seq, error: report(err) }),
    );
  });
  emit({ event: 'ready', pid: process.pid });
}

void main();
