// Opening the native side of a channel: a server creates its segment, a client attaches to one,
// waiting for a server that is not there yet.
import {
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_PERMISSIONS,
  DEFAULT_RING_CAPACITY,
  type ChannelOptions,
} from './channel-options';
import { createError, fromNativeError, nativeReason } from './errors';
import { binding } from './load-addon';
import type { NativeChannel, NativeChannelInfo } from './native';

const ROLE_SERVER = 0;
const ROLE_CLIENT = 1;
// How often a client that waits for its server tries again.
const CONNECT_RETRY_MS = 25;

/** A server's segment, created (or reclaimed from a dead server); `onWake` gets the waker's events. */
export function createSegment(
  name: string,
  o: Readonly<ChannelOptions>,
  onWake: (events: number) => void,
): NativeChannel {
  try {
    return new binding.Channel(
      ROLE_SERVER,
      name,
      o.ringCapacity ?? DEFAULT_RING_CAPACITY,
      o.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      o.permissions ?? DEFAULT_PERMISSIONS,
      onWake,
      o.poolSize ?? 0,
    );
  } catch (err) {
    throw fromNativeError(err);
  }
}

/**
 * A client attached to the server's segment, waiting up to connectTimeout for a server that is
 * not there yet or still creating it. Stops with ERR_CHANNEL_CLOSED once `closed()` says so.
 */
export async function attachSegment(
  name: string,
  o: Readonly<ChannelOptions>,
  onWake: (events: number) => void,
  closed: () => boolean,
): Promise<NativeChannel> {
  const timeout = o.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return new binding.Channel(ROLE_CLIENT, name, 0, 0, 0, onWake, 0);
    } catch (err) {
      const reason = nativeReason(err);
      // The server may not exist yet, or be between creating and initialising the segment.
      const retry = reason === 'NOT_FOUND' || reason === 'NOT_READY';
      if (!retry || timeout === 0) throw fromNativeError(err);
      if (closed()) throw createError('ERR_CHANNEL_CLOSED', `channel ${name} is closed`);
      if (Date.now() >= deadline) {
        // Why it waited says more than "no server" when there was one: still creating its
        // segment, or still freeing the slot of the client before.
        const cause = fromNativeError(err);
        const message =
          reason === 'NOT_FOUND'
            ? `no server on ${name} within ${timeout} ms`
            : `the server on ${name} was not ready within ${timeout} ms (${cause.message})`;
        throw createError('ERR_TIMEOUT', message, { cause });
      }
      await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS));
    }
  }
}

/**
 * A client refuses a server that allows larger messages than its own maxMessageSize, before
 * any traffic: the server's limit is what the peer may make it allocate.
 */
export function checkServerLimit(name: string, info: NativeChannelInfo, o: Readonly<ChannelOptions>): void {
  const acceptable = o.maxMessageSize;
  if (acceptable === undefined || info.maxMessageSize <= acceptable) return;
  throw createError(
    'ERR_INCOMPATIBLE_SEGMENT',
    `server ${name} allows messages of up to ${info.maxMessageSize} bytes, ` +
      `more than this client's maxMessageSize (${acceptable})`,
  );
}
