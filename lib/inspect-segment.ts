// Reading a channel segment's header without attaching: what `shmchannel ls` shows.
import { fromNativeError } from './errors';
import { binding } from './load-addon';
import { validateName } from './names';

/** What a channel segment's header says about it, read without attaching. */
export interface SegmentInfo {
  name: string;
  protocolVersion: number;
  ringCapacity: number;
  maxMessageSize: number;
  /** Bytes of each direction's loan pool (zero-copy); 0 if it has none. */
  poolCapacity: number;
  serverPid: number;
  /** The server that created it still runs (pid and start time match). */
  serverAlive: boolean;
  /** Pid of the attached client, 0 if none. */
  clientPid: number;
  clientAlive: boolean;
}

/**
 * Reads the header of the channel segment `name` without attaching to it: who owns it and
 * whether they are alive. ERR_INCOMPATIBLE_SEGMENT if the name is not a shmchannel segment.
 */
export function inspectSegment(name: string): SegmentInfo {
  validateName(name);
  try {
    const i = binding.inspect(name);
    return {
      name,
      protocolVersion: i.version,
      ringCapacity: i.ringCapacity,
      maxMessageSize: i.maxMessageSize,
      poolCapacity: i.poolCapacity,
      serverPid: i.serverPid,
      serverAlive: i.serverAlive,
      clientPid: i.clientPid,
      clientAlive: i.clientAlive,
    };
  } catch (err) {
    throw fromNativeError(err);
  }
}
