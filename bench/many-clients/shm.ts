// Many clients per server, shmchannel: the server is `new Channel(name, 'server')` answering
// requests$ with handleWith (an echo), each client an ordinary `new Channel(name, 'client')`
// awaiting request(), one in flight.
import { lastValueFrom, of } from 'rxjs';

import { Channel, handleWith } from '../../lib/index';
import { peerLifecycle } from '../transports/transport';
import type { ClientEnd } from './client';

/** `pollWindowUs`: the option, undefined for its default (an unset option stays unset). */
export async function openShmClient(name: string, pollWindowUs: number | undefined): Promise<ClientEnd> {
  const ch = new Channel(name, 'client', {
    connectTimeout: 30_000,
    ...(pollWindowUs === undefined ? {} : { pollWindowUs }),
  });
  await ch.open();
  return { roundTrip: (p) => lastValueFrom(ch.request(p)), close: () => ch.close() };
}

/** Server process (peer-many-server.js): `maxClients`, `pollWindowUs`: the options, undefined for the defaults. */
export async function runShmServer(
  name: string,
  maxClients: number | undefined,
  pollWindowUs: number | undefined,
): Promise<void> {
  const server = new Channel(name, 'server', {
    ...(maxClients === undefined ? {} : { maxClients }),
    ...(pollWindowUs === undefined ? {} : { pollWindowUs }),
  });
  const life = peerLifecycle(() => server.close());
  try {
    await server.open();
  } catch (err) {
    life.fail(err);
    return;
  }
  server.requests$
    .pipe(handleWith((data: Buffer) => of(data)))
    .subscribe({ error: (err: unknown) => console.error('many-clients shm server:', err) });
  life.ready();
}
