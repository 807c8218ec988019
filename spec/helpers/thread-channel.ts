// The body of a worker thread started by spec/helpers/thread-peer.ts: opens a Channel as
// told by workerData, reports what arrives, and obeys the test thread's commands.
import { parentPort, threadId, workerData } from 'node:worker_threads';

import { lastValueFrom } from 'rxjs';

import { Channel } from '../../lib/index';
import type { ThreadCommand, ThreadConfig, ThreadErrorReport, ThreadMessage, ThreadRequest } from './thread-messages';

const config = workerData as ThreadConfig;
const port = parentPort!;
const channel = new Channel(config.name, config.mode, config.options);

function send(message: ThreadMessage): void {
  port.postMessage(message);
}

function report(err: unknown): ThreadErrorReport {
  const e = err as { message?: unknown; code?: unknown };
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: typeof e?.code === 'string' ? e.code : undefined,
  };
}

async function run(command: ThreadCommand): Promise<string | undefined> {
  switch (command.cmd) {
    case 'notify':
      channel.notify(command.text);
      return undefined;
    case 'request':
      return (await lastValueFrom(channel.request(command.text))).toString('utf8');
    case 'handle-upper':
      channel.requests$.subscribe((req) => req.respond(req.data.toString('utf8').toUpperCase()));
      return undefined;
    case 'close':
      await channel.close();
      return undefined;
  }
}

async function main(): Promise<void> {
  channel.state$.subscribe((state) => send({ type: 'state', state }));
  channel.notifications$.subscribe((data) => send({ type: 'notification', text: data.toString('utf8') }));
  try {
    await channel.open();
  } catch (err) {
    send({ type: 'open-failed', error: report(err) });
    return;
  }
  port.on('message', (request: ThreadRequest) => {
    run(request.command).then(
      (result) => send({ type: 'reply', seq: request.seq, result }),
      (err: unknown) => send({ type: 'reply', seq: request.seq, error: report(err) }),
    );
  });
  send({ type: 'ready', threadId });
}

void main();
