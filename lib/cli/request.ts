import type { Subscription } from 'rxjs';

import type { Channel } from '../channel';
import { channelName, COMMON_HELP, ExitCode, integerOption, type Command } from './command';
import {
  CONNECT_HELP,
  connectTimeoutOf,
  dataOperand,
  DEFAULT_CONNECT_TIMEOUT_MS,
  END_OPTIONS,
  openClient,
} from './channel-end';
import { dataFields, printData, printJson } from './output';
import { onStopSignal } from './signals';

export const request: Command = {
  name: 'request',
  summary: 'send one request to a server and print its response',
  operands: { min: 1, max: 2, names: ['NAME', 'DATA'] },
  options: {
    ...END_OPTIONS,
    timeout: { type: 'string', short: 't' },
    stdin: { type: 'boolean' },
  },
  help: `Usage: shmchannel request NAME DATA [--timeout MS] [--json]
       shmchannel request NAME --stdin [--timeout MS] [--json]

Connects to the server of channel NAME (/NAME), sends DATA as one request and prints
every value of the response (a streamed response prints each value), then exits 0.
Each value is printed as it is, followed by a newline unless it ends with one.
A failed request exits 1 with its code: ERR_REMOTE (the handler failed; its remote code
is shown), ERR_NO_HANDLER (the server handles no requests), ERR_TIMEOUT, ERR_PEER_LOST.
SIGINT cancels the request at the server and exits 130.

Options:
  -t, --timeout MS      fail with ERR_TIMEOUT if the response has not ended within MS
                        (also bounds waiting for the server, unless --connect-timeout)
      --stdin           read DATA from stdin
${CONNECT_HELP}
${COMMON_HELP}
                        (one {"data":…} line per value; "dataBase64" if not UTF-8)

Examples:
  shmchannel request demo 'hello'
  date | shmchannel request demo --stdin --timeout 1000 --json`,

  async run(invocation) {
    const { values, positionals, json } = invocation;
    const name = channelName(positionals[0]);
    const timeout = integerOption(values, 'timeout', 1);
    const connectTimeout = connectTimeoutOf(values) ?? Math.min(DEFAULT_CONNECT_TIMEOUT_MS, timeout ?? Infinity);
    const data = await dataOperand(positionals, values);

    const stop = onStopSignal();
    let client: Channel | undefined;
    try {
      client = await openClient(name, connectTimeout, stop);
      if (client === undefined) return ExitCode.INTERRUPTED;
      const channel = client;
      let subscription: Subscription | undefined;
      const outcome = await new Promise<'complete' | 'stopped'>((resolve, reject) => {
        subscription = channel.request(data, { timeout }).subscribe({
          next: (value) => (json ? printJson(dataFields(value)) : printData(value)),
          error: reject,
          complete: () => resolve('complete'),
        });
        void stop.received.then(() => resolve('stopped'));
      });
      // Unsubscribing a request that has not ended cancels it at the server.
      subscription?.unsubscribe();
      return outcome === 'complete' ? ExitCode.OK : ExitCode.INTERRUPTED;
    } finally {
      await client?.close();
      stop.dispose();
    }
  },
};
