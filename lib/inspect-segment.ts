// Reading a segment's header without attaching: what `shmchannel ls` shows.
import { fromNativeError } from './errors';
import { binding } from './load-addon';
import { SegmentKind, SlotPhase } from './native';
import { validateName } from './names';

/**
 * What a name holds: `'channel'`, a server of one client (maxClients 1) and that client;
 * `'directory'`, a server of many clients; `'connection'`, one client's connection to such a
 * server, named `<name>~<slot>` (docs/PROTOCOL.md §7).
 */
export type SegmentKindName = 'channel' | 'directory' | 'connection';

/** One client of a server of many, as its directory says. */
export interface ClientInfo {
  /** Its connection is the segment `<name>~<slot>`. */
  slot: number;
  pid: number;
  /** That process still runs (pid and start time). */
  alive: boolean;
  /** The server made its connection (false: it asked, and waits for it). */
  connected: boolean;
  /** The connection's id, unique for the server's life; 0 before it exists. */
  connectionId: number;
}

/** What a segment's header says about it, read without attaching. */
export interface SegmentInfo {
  name: string;
  kind: SegmentKindName;
  protocolVersion: number;
  ringCapacity: number;
  maxMessageSize: number;
  /** Bytes of each direction's loan pool (zero-copy); 0 if it has none. */
  poolCapacity: number;
  serverPid: number;
  /** The server that created it still runs (pid and start time match). */
  serverAlive: boolean;
  /** Clients the server allows at once: 1 for a channel or a connection. */
  maxClients: number;
  /**
   * Pid of the attached client, 0 if none; for a directory, of its first client (see
   * `clients`).
   */
  clientPid: number;
  clientAlive: boolean;
  /** A directory's clients (taken slots) in slot order; the attached client of the others. */
  clients: ClientInfo[];
  /** A connection's id; 0 for the others. */
  connectionId: number;
}

const KIND_NAMES: Record<number, SegmentKindName> = {
  [SegmentKind.CHANNEL]: 'channel',
  [SegmentKind.DIRECTORY]: 'directory',
  [SegmentKind.CONNECTION]: 'connection',
};

/**
 * Reads the header of the segment `name` without attaching to it: what it is, who owns it and
 * whether they are alive. ERR_INCOMPATIBLE_SEGMENT if the name is not a shmchannel segment.
 */
export function inspectSegment(name: string): SegmentInfo {
  validateName(name);
  try {
    const i = binding.inspect(name);
    const kind = KIND_NAMES[i.kind] ?? 'channel';
    const clients: ClientInfo[] =
      kind === 'directory'
        ? binding.inspectClients(name).map((c) => ({
            slot: c.slot,
            pid: c.pid,
            alive: c.alive,
            connected: c.phase === SlotPhase.READY,
            connectionId: c.connectionId,
          }))
        : i.clientPid === 0
          ? []
          : [{ slot: 0, pid: i.clientPid, alive: i.clientAlive, connected: true, connectionId: i.connectionId }];
    return {
      name,
      kind,
      protocolVersion: i.version,
      ringCapacity: i.ringCapacity,
      maxMessageSize: i.maxMessageSize,
      poolCapacity: i.poolCapacity,
      serverPid: i.serverPid,
      serverAlive: i.serverAlive,
      maxClients: i.maxClients,
      clientPid: clients[0]?.pid ?? 0,
      clientAlive: clients[0]?.alive ?? false,
      clients,
      connectionId: i.connectionId,
    };
  } catch (err) {
    throw fromNativeError(err);
  }
}
