// Forked by the many-clients scenarios: a server of many clients (argv: shm|socket, channel name
// or socket path, then shmchannel's maxClients and pollWindowUs, '' for the defaults). The
// socket's server does not load shmchannel.
import { numberArg } from './many-clients/client';

async function main(): Promise<void> {
  const [kind, address, maxClients, pollWindowUs] = process.argv.slice(2);
  if (kind === 'shm') {
    const { runShmServer } = await import('./many-clients/shm.js');
    await runShmServer(address, numberArg(maxClients), numberArg(pollWindowUs));
  } else {
    const { runSocketServer } = await import('./many-clients/socket.js');
    runSocketServer(address);
  }
}

void main();
