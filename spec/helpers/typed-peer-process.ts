// A peer forked by spec/helpers/typed-peer.ts: a TypedChannel with one codec for every kind
// of message, driven by commands from the test process. Every error it meets is reported.
import { from, interval, lastValueFrom, map, of, range, tap, type Observable, type Subscription } from 'rxjs';

import { Channel, codecs, handleTypedWith, TypedChannel, type Codec } from '../../lib/index';
import type { ErrorReport } from './peer-messages';
import type {
  CodecName,
  TypedHandlerKind,
  TypedPeerCommand,
  TypedPeerConfig,
  TypedPeerMessage,
} from './typed-peer-messages';

const config = JSON.parse(process.argv[2]) as TypedPeerConfig;
const codec = codecs[config.codec] as Codec<unknown>;
let channel: Channel;
let typed: TypedChannel<unknown, unknown, unknown>;
let handler: Subscription | undefined;
const notifications: unknown[] = [];
const waiters: { count: number; resolve: () => void }[] = [];
const codecErrors: ErrorReport[] = [];

// What each codec cannot encode.
const UNENCODABLE: Record<CodecName, unknown> = { raw: 'not a buffer', utf8: 42, json: 10n, structuredClone: () => 1 };

function send(message: TypedPeerMessage): void {
  process.send?.(message);
}

function report(err: unknown): ErrorReport {
  const e = err as Partial<ErrorReport> | undefined;
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: e?.code,
    remoteCode: e?.remoteCode,
  };
}

function answer(kind: TypedHandlerKind, value: unknown): Observable<unknown> {
  switch (kind) {
    case 'echo':
      return of(value);
    case 'stream':
      return range(0, 3).pipe(map((index) => ({ index, value })));
    case 'ticks':
      return interval(20).pipe(map(() => value));
    case 'unencodable':
      return from([UNENCODABLE[config.codec]]);
  }
}

async function run(command: TypedPeerCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'handle':
      handler?.unsubscribe();
      handler = typed.requests$
        .pipe(
          handleTypedWith((value, request) => {
            request.cancelled$.subscribe(() => send({ type: 'event', event: 'cancelled', requestId: request.id }));
            return answer(command.kind, value);
          }),
        )
        .subscribe({ error: (err: unknown) => send({ type: 'event', event: 'fatal', error: report(err) }) });
      return {};
    case 'notify':
      typed.notify(command.value);
      return {};
    case 'request': {
      const values: unknown[] = [];
      try {
        await lastValueFrom(typed.request(command.value).pipe(tap((v) => values.push(v))), { defaultValue: undefined });
        return { values };
      } catch (err) {
        return { values, error: report(err) };
      }
    }
    case 'collect':
      if (notifications.length < command.count) {
        await new Promise<void>((resolve) => waiters.push({ count: command.count, resolve }));
      }
      return notifications;
    case 'codec-errors':
      return codecErrors;
    case 'close':
      await channel.close();
      return {};
  }
}

async function main(): Promise<void> {
  const fatal = (err: unknown) => {
    send({ type: 'event', event: 'fatal', error: report(err) });
    process.exit(1);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  process.on('disconnect', () => void channel?.close().finally(() => process.exit(0)));

  channel = new Channel(config.name, config.mode);
  typed = new TypedChannel(channel, { notification: codec, request: codec, response: codec });
  typed.codecErrors$.subscribe((err) => codecErrors.push(report(err)));
  typed.notifications$.subscribe({
    next: (value) => {
      notifications.push(value);
      for (const waiter of waiters.filter((w) => notifications.length >= w.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    },
    error: fatal,
  });
  try {
    await channel.open();
  } catch (err) {
    send({ type: 'event', event: 'open-failed', error: report(err) });
    process.disconnect();
    return;
  }
  process.on('message', (message: { seq: number; command: TypedPeerCommand }) => {
    run(message.command).then(
      (result) => send({ type: 'reply', seq: message.seq, result }),
      (err: unknown) => send({ type: 'reply', seq: message.seq, error: report(err) }),
    );
  });
  send({ type: 'event', event: 'ready' });
}

void main();
