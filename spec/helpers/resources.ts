import { Channel, SharedMemory, type ChannelOptions, type Mode } from '../../lib/index';
import { shmExists } from './names';
import { Peer } from './peer';

const channels = new Set<Channel>();
const namesToUnlink = new Set<string>();

/** A new Channel that afterEach closes (see releaseAll). */
export function channel(name: string, mode: Mode, options?: ChannelOptions): Channel {
  const ch = new Channel(name, mode, options);
  channels.add(ch);
  return ch;
}

/** A new Channel, opened. */
export async function openChannel(name: string, mode: Mode, options?: ChannelOptions): Promise<Channel> {
  const ch = channel(name, mode, options);
  await ch.open();
  return ch;
}

/**
 * Unlink `name` in afterEach if it still exists: only for segments a test leaves behind on
 * purpose (a SIGKILLed server cannot unlink, raw SharedMemory segments are the user's to
 * unlink). Segments a Channel should have removed are not listed, so 99.dev-shm-clean sees
 * a leak.
 */
export function unlinkLater(name: string): void {
  namesToUnlink.add(name);
}

/** afterEach: stop peers (gracefully, then SIGKILL), close channels, unlink listed names. */
export async function releaseAll(): Promise<void> {
  await Peer.stopAll();
  const closing = [...channels].map((ch) => ch.close());
  channels.clear();
  await Promise.all(closing);
  for (const name of namesToUnlink) {
    if (shmExists(name)) SharedMemory.unlink(name);
  }
  namesToUnlink.clear();
}
