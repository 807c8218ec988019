// Forked by the many-clients scenarios: one client of a server of many (argv: shm|socket,
// channel name or socket path, warm-up round trips, then shmchannel's pollWindowUs, '' for the
// default). The socket's clients do not load shmchannel.
import { numberArg, runClient } from './many-clients/client';

async function main(): Promise<void> {
  const [kind, address, warmup, pollWindowUs] = process.argv.slice(2);
  if (kind === 'shm') {
    const { openShmClient } = await import('./many-clients/shm.js');
    await runClient(() => openShmClient(address, numberArg(pollWindowUs)), Number(warmup));
  } else {
    const { openSocketClient } = await import('./many-clients/socket.js');
    await runClient(() => openSocketClient(address), Number(warmup));
  }
}

void main();
