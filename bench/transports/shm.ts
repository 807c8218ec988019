// shmchannel, through its public API only. The peer is the server (it creates the
// segment); the bench process attaches as the client.
//   round trip: request(payload) -> handleWith echo
//   control:    request(JSON starting with '{') -> JSON response
//   one-way:    notify(payload); for notifications the sequence number is stamped into
//               the first 4 bytes of the payload (shmchannel has no user header).
import { lastValueFrom, of } from 'rxjs';

import { Channel, handleWith, SharedMemory } from '../../lib/index';
import { decodeJson, encodeJson, OP_ECHO, PeerLogic, type Control, type ControlReply } from '../common';
import { forkPeer, peerLifecycle, type Peer, type Transport } from './transport';

let instances = 0;

export class ShmTransport implements Transport {
  private readonly name = `/shmch-bench-${process.pid}-${++instances}`;
  private peer: Peer | undefined;
  private channel: Channel | undefined;

  readonly key = 'shm';
  readonly label = 'shmchannel';

  async setup(): Promise<void> {
    this.peer = forkPeer('shm', [this.name], 'json');
    await this.peer.ready;
    this.channel = new Channel(this.name, 'client', { connectTimeout: 10_000 });
    await this.channel.open();
  }

  roundTrip(payload: Buffer): Promise<Buffer> {
    return lastValueFrom(this.channel!.request(payload));
  }

  async control(msg: Control): Promise<ControlReply> {
    return decodeJson<ControlReply>(await lastValueFrom(this.channel!.request(encodeJson(msg))));
  }

  async sendMessages(n: number, payloads: readonly Buffer[], stampSeq: boolean): Promise<void> {
    const ch = this.channel!;
    const count = payloads.length;
    for (let i = 0; i < n; i++) {
      const p = payloads[i % count];
      if (stampSeq) p.writeUInt32LE(i, 0);
      // The ring is full and the rest waits in the queue: let the peer catch up first.
      if (!ch.notify(p)) await ch.drained();
    }
  }

  async teardown(): Promise<void> {
    await this.channel?.close();
    this.channel = undefined;
    await this.peer?.stop();
    this.peer = undefined;
    removeSegment(this.name);
  }

  emergencyCleanup(): void {
    void this.channel?.close();
    this.peer?.child.kill('SIGTERM');
    removeSegment(this.name);
  }
}

/** The peer closes (and so unlinks) its segment; this only catches a peer that died. */
function removeSegment(name: string): void {
  try {
    SharedMemory.unlink(name);
  } catch {
    // Already gone: the normal case.
  }
}

export async function runShmPeer(name: string): Promise<void> {
  const logic = new PeerLogic();
  const server = new Channel(name, 'server');
  const life = peerLifecycle(() => server.close());
  try {
    await server.open();
  } catch (err) {
    life.fail(err);
    return;
  }
  server.requests$
    .pipe(
      handleWith((data: Buffer) => {
        if (data[0] === OP_ECHO) return of(data);
        return Promise.resolve(logic.control(decodeJson<Control>(data))).then(encodeJson);
      }),
    )
    .subscribe({ error: (err: unknown) => console.error('peer-shm requests:', err) });
  server.notifications$.subscribe({
    next: (data) => logic.onMessage(data.length >= 4 ? data.readUInt32LE(0) : -1, data),
    error: (err: unknown) => console.error('peer-shm notifications:', err),
  });
  life.ready();
}
