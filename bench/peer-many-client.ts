// Forked by the many-clients scenarios: one client of a server of many (argv: shm|socket,
// channel name or socket path, warm-up round trips, then shmchannel's pollWindowUs, '' for the
// default). The socket's clients do not load shmchannel (require(): see peer-many-server.ts).
import { numberArg, runClient } from './many-clients/client';

const [kind, address, warmup, pollWindowUs] = process.argv.slice(2);
if (kind === 'shm') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { openShmClient } = require('./many-clients/shm') as typeof import('./many-clients/shm');
  void runClient(() => openShmClient(address, numberArg(pollWindowUs)), Number(warmup));
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { openSocketClient } = require('./many-clients/socket') as typeof import('./many-clients/socket');
  void runClient(() => openSocketClient(address), Number(warmup));
}
