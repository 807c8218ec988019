import { codecs, TypedChannel, type Channel, type ChannelOptions, type Codec } from '../../lib/index';
import { uniqueName } from './names';
import { Peer, type CodecName } from './peer';
import { openChannel } from './resources';
import { reaches } from './wait';

/** A client in this process, connected to a server peer opened with `serverOptions`. */
export async function clientOfPeer(
  label: string,
  serverOptions?: ChannelOptions,
): Promise<{ client: Channel; peer: Peer }> {
  const name = uniqueName(label);
  const peer = await Peer.spawn({ name, mode: 'server', options: serverOptions });
  const client = await openChannel(name, 'client');
  return { client, peer };
}

/** A server in this process, opened with `serverOptions`, with a client peer connected. */
export async function serverOfPeer(
  label: string,
  serverOptions?: ChannelOptions,
): Promise<{ server: Channel; peer: Peer }> {
  const name = uniqueName(label);
  const server = await openChannel(name, 'server', serverOptions);
  const peer = await Peer.spawn({ name, mode: 'client' });
  await reaches(server, 'connected');
  return { server, peer };
}

/** A TypedChannel server in this process (every kind of message through `codec`), and a typed peer client. */
export async function typedServerOfPeer<T>(label: string, codecName: CodecName) {
  const name = uniqueName(label);
  const server = await openChannel(name, 'server');
  const codec = codecs[codecName] as unknown as Codec<T>;
  const typed = new TypedChannel<T, T, T>(server, { notification: codec, request: codec, response: codec });
  const peer = await Peer.spawn<unknown>({ name, mode: 'client', codec: codecName });
  await reaches(server, 'connected');
  return { typed, peer, server };
}
