import { Buffer } from 'node:buffer';

import { filter, firstValueFrom } from 'rxjs';

import { Channel, type ChannelOptions } from '../channel';
import { createError, isShmChannelError } from '../errors';
import { inspectSegment } from '../inspect-segment';
import { DEFAULT_MAX_CLIENTS, MAX_CLIENTS } from '../native';
import { integerOption, UsageError, type OptionSpecs, type OptionValues } from './command';
import type { StopSignal } from './signals';

/** Options of the commands that open one end of a channel (request, notify, listen). */
export const END_OPTIONS: OptionSpecs = {
  'connect-timeout': { type: 'string' },
};

export const CONNECT_HELP = `      --connect-timeout MS
                        how long to wait for the server (client) or for a client
                        (--server) to appear; default 5000 for a client, no limit for
                        a server`;

export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

/** Options of the commands that serve many clients (serve, listen --server). */
export const SERVER_OPTIONS: OptionSpecs = {
  'max-clients': { type: 'string' },
};

export const MAX_CLIENTS_HELP = `      --max-clients N   clients served at once (1 to ${MAX_CLIENTS}, default ${DEFAULT_MAX_CLIENTS}); with 1, a
                        second client is refused (ERR_CHANNEL_BUSY) until the first leaves`;

/** The server's channel options from --max-clients. */
export function serverOptionsOf(values: OptionValues): ChannelOptions {
  const maxClients = integerOption(values, 'max-clients', 1);
  if (maxClients !== undefined && maxClients > MAX_CLIENTS) {
    throw new UsageError(`--max-clients must be at most ${MAX_CLIENTS}, got ${maxClients}`);
  }
  return maxClients === undefined ? {} : { maxClients };
}

/** A client of a server as the CLI reports it: its pid, and its connection's id (0 with maxClients 1). */
export interface ClientEvent {
  pid: number;
  id: number;
}

/**
 * Calls `connected` for each client of `server` (opened with `options`) as it connects and
 * `left` as it goes: from clients$ for a server of many clients; for a server of one, from
 * state$ and its segment's client pid.
 */
export function watchClients(
  server: Channel,
  options: ChannelOptions,
  connected: (client: ClientEvent) => void,
  left: (client: ClientEvent) => void,
): void {
  if ((options.maxClients ?? DEFAULT_MAX_CLIENTS) > 1) {
    server.clients$.subscribe((client) => {
      const event = { pid: client.pid, id: client.id };
      connected(event);
      void client.closed.then(() => left(event));
    });
    return;
  }
  // A client that dies before its hello was never reported as connected: nor is it as gone.
  let current: ClientEvent | undefined;
  server.state$.subscribe((state) => {
    if (state === 'connected') {
      current = { pid: clientPidOf(server.name), id: 0 };
      connected(current);
    } else if (state === 'peer-lost' && current !== undefined) {
      left(current);
      current = undefined;
    }
  });
}

function clientPidOf(name: string): number {
  try {
    return inspectSegment(name).clientPid;
  } catch {
    return 0;
  }
}

export function connectTimeoutOf(values: OptionValues): number | undefined {
  return integerOption(values, 'connect-timeout', 0);
}

/** The data operand, or all of stdin with --stdin (then no data operand is allowed). */
export async function dataOperand(positionals: string[], values: OptionValues): Promise<Buffer> {
  if (values.stdin === true) {
    if (positionals.length > 1) throw new UsageError('give DATA or --stdin, not both');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  if (positionals.length < 2) throw new UsageError('missing DATA (or --stdin)');
  return Buffer.from(positionals[1], 'utf8');
}

/**
 * Opens `channel`, or closes it if a stop signal comes first: resolves true when open,
 * false when stopped. A server with `waitForClient` also waits for a client to connect,
 * up to `connectTimeout` ms when given (ERR_TIMEOUT after that).
 */
export async function openUnlessStopped(
  channel: Channel,
  stop: StopSignal,
  waitForClient?: { connectTimeout: number | undefined },
): Promise<boolean> {
  const opened = (async () => {
    await channel.open();
    if (waitForClient === undefined) return true;
    const connected = firstValueFrom(channel.state$.pipe(filter((s) => s === 'connected' || s === 'closed')));
    const limit = waitForClient.connectTimeout;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      if (limit !== undefined) timer = setTimeout(() => resolve('timeout'), limit);
    });
    const state = await Promise.race([connected, timedOut]);
    clearTimeout(timer);
    if (state === 'timeout')
      throw createError('ERR_TIMEOUT', `no client connected to ${channel.name} within ${String(limit)} ms`);
    if (state === 'closed')
      throw createError('ERR_CHANNEL_CLOSED', `channel ${channel.name} closed before a client connected`);
    return true;
  })();
  const stopped = stop.received.then(() => false);
  const first = await Promise.race([opened, stopped]);
  if (!first) {
    await channel.close();
    await opened.catch(() => undefined);
  }
  return first;
}

/**
 * Waits until everything sent on `channel` is in its ring (nothing left in the outgoing
 * queue, which fills only while the ring is full): resolves true, or false on a stop signal.
 * ERR_PEER_LOST if the peer goes away first. close() would wait too, but only closeTimeout,
 * and then only warn; a command must fail instead.
 */
export async function sentOrStopped(channel: Channel, stop: StopSignal): Promise<boolean> {
  const sent = channel.drained().then(
    () => true,
    (err: unknown) => {
      if (!isShmChannelError(err, 'ERR_PEER_LOST')) throw err;
      throw createError('ERR_PEER_LOST', `the peer of ${channel.name} left before reading all that was sent`, {
        cause: err,
      });
    },
  );
  return Promise.race([sent, stop.received.then(() => false)]);
}

/**
 * A connected client of `name`, or undefined if a stop signal came first. Waits up to
 * `connectTimeout` ms for the server (and, like Channel#open(), for the slot of a client
 * that has just left to be freed). A slot held by a live process fails at once.
 */
export async function openClient(name: string, connectTimeout: number, stop: StopSignal): Promise<Channel | undefined> {
  const channel = new Channel(name, 'client', { connectTimeout });
  try {
    return (await openUnlessStopped(channel, stop)) ? channel : undefined;
  } catch (err) {
    await channel.close();
    throw err;
  }
}
