import { filter, firstValueFrom } from 'rxjs';

import { Channel } from '../channel';
import { createError } from '../errors';
import { channelName, COMMON_HELP, ExitCode, integerOption, type Command } from './command';
import {
  CONNECT_HELP,
  connectTimeoutOf,
  DEFAULT_CONNECT_TIMEOUT_MS,
  END_OPTIONS,
  MAX_CLIENTS_HELP,
  openClient,
  openUnlessStopped,
  SERVER_OPTIONS,
  serverOptionsOf,
} from './channel-end';
import { dataFields, printData, printJson, printStatus } from './output';
import { onStopSignal } from './signals';

export const listen: Command = {
  name: 'listen',
  summary: 'print the notifications that arrive on a channel',
  operands: { min: 1, max: 1, names: ['NAME'] },
  options: {
    ...END_OPTIONS,
    ...SERVER_OPTIONS,
    count: { type: 'string', short: 'n' },
    server: { type: 'boolean' },
  },
  help: `Usage: shmchannel listen NAME [--count N] [--server [--max-clients N]] [--json]

Prints every notification that arrives on channel NAME (/NAME) until SIGINT or SIGTERM
(exit 0), until N have arrived with --count (exit 0), or until the server closes the
channel (exit 0; exit 1 with ERR_PEER_LOST if fewer than N had arrived). As a client (the
default) it connects to the server of NAME; with --server it creates NAME and listens to
every client that connects (e.g. 'shmchannel notify NAME DATA'), several at once.
Requests that arrive are refused with ERR_NO_HANDLER.

Options:
  -n, --count N         exit after N notifications
      --server          be the server end instead of a client
${MAX_CLIENTS_HELP}
${CONNECT_HELP}
${COMMON_HELP}
                        (one {"data":…} line per notification; "dataBase64" if not UTF-8)

Examples:
  shmchannel listen demo
  shmchannel listen demo --server --count 1 --json`,

  async run(invocation) {
    const { values, positionals, json } = invocation;
    const name = channelName(positionals[0]);
    const count = integerOption(values, 'count', 1);
    const asServer = values.server === true;
    const connectTimeout = connectTimeoutOf(values);

    const stop = onStopSignal();
    let channel: Channel | undefined;
    let received = 0;
    try {
      if (asServer) {
        channel = new Channel(name, 'server', serverOptionsOf(values));
        if (!(await openUnlessStopped(channel, stop))) return ExitCode.OK;
        if (!json) printStatus('listen', `listening on ${name} (pid ${process.pid}) as its server`);
      } else {
        channel = await openClient(name, connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS, stop);
        if (channel === undefined) return ExitCode.OK;
      }
      // Subscribed before any notification can be delivered: those arrive in event-loop
      // callbacks, and this runs in the same microtask sequence as open().
      let reachedCount!: () => void;
      const enough = new Promise<'count'>((resolve) => (reachedCount = () => resolve('count')));
      let failure: unknown;
      channel.notifications$.subscribe({
        next: (data) => {
          if (count !== undefined && received >= count) return;
          received += 1;
          if (json) printJson(dataFields(data));
          else printData(data);
          if (received === count) reachedCount();
        },
        error: (err: unknown) => (failure = err),
      });
      const ended = firstValueFrom(channel.state$.pipe(filter((s) => s === 'closed'))).then(() => 'ended' as const);
      const how = await Promise.race([stop.received, enough, ended]);
      if (how === 'ended') {
        if (failure !== undefined) throw failure;
        if (count !== undefined && received < count) {
          throw createError('ERR_PEER_LOST', `the server closed ${name} after ${received} of ${count} notifications`);
        }
      }
      return ExitCode.OK;
    } finally {
      await channel?.close();
      stop.dispose();
    }
  },
};
