// Forked by the many-clients scenarios: a server of many clients (argv: shm|socket, channel name
// or socket path, then shmchannel's maxClients and pollWindowUs, '' for the defaults). The
// socket's server does not load shmchannel. require(), not import(): Node's ESM loader reads
// files on libuv's thread pool, which would start its 4 threads in every process.
import { numberArg } from './many-clients/client';

const [kind, address, maxClients, pollWindowUs] = process.argv.slice(2);
if (kind === 'shm') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { runShmServer } = require('./many-clients/shm') as typeof import('./many-clients/shm');
  void runShmServer(address, numberArg(maxClients), numberArg(pollWindowUs));
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { runSocketServer } = require('./many-clients/socket') as typeof import('./many-clients/socket');
  runSocketServer(address);
}
