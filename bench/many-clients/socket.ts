// Many clients per server, Unix socket: the server is a net.Server, each client a connection
// of its own, framed as the socket transport frames (FrameWriter / FrameReader of
// ../transports/socket); each connection echoes its requests. The client reads with `onread`
// into one reused buffer, as the socket transport's peer does.
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';

import { FrameType as Type, PendingReplies } from '../common';
import { FrameReader, FrameWriter } from '../transports/socket';
import { peerLifecycle } from '../transports/transport';
import type { ClientEnd } from './client';

export async function openSocketClient(socketPath: string): Promise<ClientEnd> {
  const replies = new PendingReplies();
  const reader = new FrameReader((type, id, data) => replies.frame(type, id, data));
  const socket = net.connect({
    path: socketPath,
    onread: {
      buffer: Buffer.allocUnsafeSlow(64 * 1024),
      callback: (nread: number, buf: Uint8Array) => {
        reader.push(buf as Buffer, nread);
        return true;
      },
    },
  });
  await once(socket, 'connect');
  socket.on('error', (err) => console.error('many-clients socket client:', err.message));
  const writer = new FrameWriter(socket);
  return {
    roundTrip: (p) => replies.request((id) => writer.send(Type.REQUEST, id, p)),
    close: () => void socket.end(),
  };
}

/** Server process (peer-many-server.js): any number of clients. */
export function runSocketServer(socketPath: string): void {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const writer = new FrameWriter(socket);
    // `data` views this read's chunk; small frames are copied into the writer's chunk at once.
    const reader = new FrameReader((type, id, data) => {
      if (type === Type.REQUEST) writer.send(Type.RESPONSE, id, data);
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => undefined); // a client that goes away mid-write: nothing to answer
    socket.once('close', () => sockets.delete(socket));
  });
  removeFile(socketPath);
  const life = peerLifecycle(() => {
    for (const s of sockets) s.destroy();
    server.close();
    removeFile(socketPath);
  });
  server.once('error', (err) => life.fail(err));
  server.listen({ path: socketPath, backlog: 512 }, () => life.ready());
}

export function removeFile(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // not there
  }
}
