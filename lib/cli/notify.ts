import { Channel } from '../channel';
import { channelName, COMMON_HELP, ExitCode, type Command } from './command';
import {
  CONNECT_HELP,
  connectTimeoutOf,
  dataOperand,
  DEFAULT_CONNECT_TIMEOUT_MS,
  END_OPTIONS,
  openClient,
  openUnlessStopped,
  sentOrStopped,
} from './channel-end';
import { printJson } from './output';
import { onStopSignal } from './signals';

export const notify: Command = {
  name: 'notify',
  summary: 'send one notification',
  operands: { min: 1, max: 2, names: ['NAME', 'DATA'] },
  options: {
    ...END_OPTIONS,
    stdin: { type: 'boolean' },
    server: { type: 'boolean' },
  },
  help: `Usage: shmchannel notify NAME DATA [--server] [--json]
       shmchannel notify NAME --stdin [--server] [--json]

Sends DATA as one notification on channel NAME (/NAME) and exits 0 once it is in the
channel (closing waits for it: nothing is dropped). As a client (the default) it connects
to the server of NAME; with --server it creates NAME, waits for a client (e.g.
'shmchannel listen NAME'), sends, and closes.

Options:
      --stdin           read DATA from stdin
      --server          be the server end instead of a client
${CONNECT_HELP}
${COMMON_HELP}
                        (prints {"sent":BYTES})

Examples:
  shmchannel notify demo 'hello'
  shmchannel notify demo --server 'tick'     # for: shmchannel listen demo`,

  async run(invocation) {
    const { values, positionals, json } = invocation;
    const name = channelName(positionals[0]);
    const data = await dataOperand(positionals, values);
    const asServer = values.server === true;
    const connectTimeout = connectTimeoutOf(values);

    const stop = onStopSignal();
    let channel: Channel | undefined;
    try {
      if (asServer) {
        channel = new Channel(name, 'server');
        if (!(await openUnlessStopped(channel, stop, { connectTimeout }))) return ExitCode.INTERRUPTED;
      } else {
        channel = await openClient(name, connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS, stop);
        if (channel === undefined) return ExitCode.INTERRUPTED;
      }
      channel.notify(data);
      if (!(await sentOrStopped(channel, stop))) return ExitCode.INTERRUPTED;
    } finally {
      await channel?.close();
      stop.dispose();
    }
    if (json) printJson({ sent: data.length });
    return ExitCode.OK;
  },
};
