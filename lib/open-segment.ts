// Opening the native side of a channel: a server creates its segment (one client) or its
// directory (many), a client connects to either, waiting for a server that is not there yet.
import {
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_MAX_CLIENTS,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_PERMISSIONS,
  DEFAULT_RING_CAPACITY,
  type ChannelOptions,
} from './channel-options';
import { createError, fromNativeError, nativeReason, type ShmChannelError } from './errors';
import { binding } from './load-addon';
import type { NativeChannel, NativeChannelInfo, NativeConnector, NativeServer } from './native';

const ROLE_SERVER = 0;
const ROLE_CLIENT = 1;
// A client that waits for its server looks again after a pause that doubles from the next turn
// of the event loop (0) up to this: a server of many makes the connection within microseconds
// of the claim, one not there yet takes longer.
const CONNECT_RETRY_MAX_MS = 25;
// connectTimeout 0 does not wait for a server to appear; one that is there still gets this long
// to make the connection (as shmch_attach() gives it).
const CONNECTION_MADE_WITHIN_MS = 2000;

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

/** A server of many clients: its directory, created (or reclaimed from a dead server). */
export function createServer(
  name: string,
  o: Readonly<ChannelOptions>,
  onWake: (events: number) => void,
): NativeServer {
  try {
    return new binding.Server(
      name,
      o.ringCapacity ?? DEFAULT_RING_CAPACITY,
      o.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      o.permissions ?? DEFAULT_PERMISSIONS,
      o.poolSize ?? 0,
      o.maxClients ?? DEFAULT_MAX_CLIENTS,
      onWake,
    );
  } catch (err) {
    throw fromNativeError(err);
  }
}

/**
 * A client attached to its server: the segment of a server of one client, or a connection the
 * server of many made for it. Waits up to connectTimeout for a server that is not there yet, is
 * still creating its segment, or has yet to make the connection, looking again after a short
 * pause each time (no thread blocks). Stops with ERR_CHANNEL_CLOSED once `closed()` says so.
 */
export async function attachSegment(
  name: string,
  o: Readonly<ChannelOptions>,
  onWake: (events: number) => void,
  closed: () => boolean,
): Promise<NativeChannel> {
  const timeout = o.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
  const start = Date.now();
  let connector: NativeConnector | undefined;
  // Why it waits: the last NOT_FOUND / NOT_READY, or undefined while the server makes the connection.
  let waitingFor: unknown;
  let pause = -1;
  try {
    for (;;) {
      if (closed()) throw createError('ERR_CHANNEL_CLOSED', `channel ${name} is closed`);
      try {
        connector ??= new binding.Connector(name);
        if (connector.finish()) {
          const attached = connector;
          connector = undefined;
          try {
            return new binding.Channel(ROLE_CLIENT, name, 0, 0, 0, onWake, 0, attached);
          } finally {
            // Frees the attempt at once (not when collected); closes its channel if none took it.
            attached.cancel();
          }
        }
        waitingFor = undefined;
      } catch (err) {
        // After a failure the attempt is over; the next look starts a new one.
        connector?.cancel();
        connector = undefined;
        const reason = nativeReason(err);
        // The server may not exist yet, be between creating and initialising its segment, or
        // still be freeing the slot of a client before.
        if (!(reason === 'NOT_FOUND' || reason === 'NOT_READY') || timeout === 0) throw fromNativeError(err);
        waitingFor = err;
      }
      const bound = waitingFor === undefined && timeout === 0 ? CONNECTION_MADE_WITHIN_MS : timeout;
      if (Date.now() - start >= bound) throw connectTimedOut(name, waitingFor, bound);
      await new Promise((resolve) => (pause < 0 ? setImmediate(resolve) : setTimeout(resolve, pause)));
      pause = pause < 0 ? 1 : Math.min(pause * 2, CONNECT_RETRY_MAX_MS);
    }
  } finally {
    // Closed, timed out, or failed while a slot was claimed: the server gets it back.
    connector?.cancel();
  }
}

/** Why a client gave up waiting: it says more than "no server" when there was one. */
function connectTimedOut(name: string, waitingFor: unknown, waited: number): ShmChannelError {
  if (waitingFor === undefined) {
    return createError(
      'ERR_TIMEOUT',
      `the server on ${name} did not make this client's connection within ${waited} ms`,
    );
  }
  const cause = fromNativeError(waitingFor);
  const message =
    nativeReason(waitingFor) === 'NOT_FOUND'
      ? `no server on ${name} within ${waited} ms`
      : `the server on ${name} was not ready within ${waited} ms (${cause.message})`;
  return createError('ERR_TIMEOUT', message, { cause });
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
