import type { Channel, Connection } from '../../lib/index';

/** Every Connection a server of many emits on clients$ from now on, as they come. */
export function recordClients(server: Channel): Connection[] {
  const seen: Connection[] = [];
  server.clients$.subscribe((c) => seen.push(c));
  return seen;
}
