// A server of many at its directory: the clients that ask for a connection, and those that left.
import { debuglog } from 'node:util';

import type { ClientSet } from './client-set';
import { fromNativeError } from './errors';
import type { NativeChannel, NativeServer } from './native';

const debug = debuglog('shmchannel');

/**
 * Makes the connection of every client that asks now and hands it to `accepted`. A client the
 * server cannot serve (no room in /dev/shm, say) is refused, told so, and reported with a process
 * warning (SHMCHANNEL_CLIENT_REFUSED); the others still get in.
 */
export function acceptClients(
  native: NativeServer,
  name: string,
  maxClients: number,
  accepted: (id: number, pid: number, channel: NativeChannel) => void,
): void {
  // Each refusal is of one client that asked: at most one per slot.
  for (let refused = 0; refused <= maxClients;) {
    let next: [number, number, NativeChannel] | null;
    try {
      next = native.accept();
    } catch (err) {
      // The server itself is closed: not one client's problem.
      if (fromNativeError(err).code === 'ERR_CHANNEL_CLOSED') throw err;
      refused++;
      refuse(name, 'a client', err);
      continue;
    }
    if (next === null) return;
    const [id, pid, channel] = next;
    try {
      accepted(id, pid, channel);
    } catch (err) {
      channel.close();
      refuse(name, `client ${id} (pid ${pid})`, err);
    }
  }
}

/** Ends the connection of every client that closed or died, after reading what it left. */
export function endLeftClients(native: NativeServer, clients: ClientSet): void {
  for (const id of native.left()) {
    const c = clients.get(id);
    if (c === undefined) continue;
    try {
      // What it wrote before it left still counts.
      c.pump();
    } catch (err) {
      debug('client %d: what it left unread: %s', id, (err as Error).message);
    }
    c.left();
  }
}

function refuse(name: string, who: string, err: unknown): void {
  process.emitWarning(`shmchannel: server ${name} refused ${who}: ${fromNativeError(err).message}`, {
    code: 'SHMCHANNEL_CLIENT_REFUSED',
  });
}
