// shmchannel, through its public API only. The peer is the server (it creates the
// segment); the bench process attaches as the client.
//   round trip: request(payload) -> handleWith echo
//   control:    request(JSON starting with '{') -> JSON response
//   one-way:    notify(payload) -> notifications$; for notifications the sequence number is
//               stamped into the first 4 bytes of the payload (shmchannel has no user header).
//   grouped:    notifyMany(group) -> notificationBatches$ (the batch row), each message read
//               where it lies in the batch.
//   produced:   loan() (waitForLoan() when the pool is exhausted), the source copied in,
//               notify(loan) -> notifications$ of borrowed views, each released once checked.
//   hand-off:   request(loan filled before the clock starts) -> handleWith that reads the
//               borrowed view's length, first and last byte, releases it and answers 64 B.
// The server opens with a loan pool (POOL_SIZE) and borrow: true (it is the receiving side of
// every one-way scenario and of the hand-off); messages sent from plain Buffers still arrive
// as copies, so the other rows measure what they did without a pool.
import { lastValueFrom, of, type Subscription } from 'rxjs';

import { Channel, handleWith, SharedMemory, type NotificationBatch } from '../../lib/index';
import {
  decodeJson,
  encodeJson,
  handOffAnswer,
  OP_ECHO,
  OP_HANDOFF,
  PeerLogic,
  type Control,
  type ControlReply,
} from '../common';
import { forkPeer, peerLifecycle, type Peer, type Transport } from './transport';

let instances = 0;

/**
 * Messages per notifyMany() call: 64 KiB of 64 B messages, about what the socket row puts in one
 * write() (its 64 KiB chunk).
 */
const GROUP = 1024;

/** Bytes of each direction's loan pool: four of the largest payload (16 MiB), a multiple of 4096. */
const POOL_SIZE = 4 * (16 << 20);

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

  async sendMessages(n: number, payloads: readonly Buffer[], stampSeq: boolean, grouped = false): Promise<void> {
    if (grouped) return this.sendGroups(n, payloads, stampSeq);
    const ch = this.channel!;
    const count = payloads.length;
    for (let i = 0; i < n; i++) {
      const p = payloads[i % count];
      if (stampSeq) p.writeUInt32LE(i, 0);
      // The ring is full and the rest waits in the queue: let the peer catch up first.
      if (!ch.notify(p)) await ch.drained();
    }
  }

  async sendProduced(n: number, sources: readonly Buffer[]): Promise<void> {
    const ch = this.channel!;
    const count = sources.length;
    for (let i = 0; i < n; i++) {
      const source = sources[i % count];
      const loan = await this.loanOf(source.length);
      source.copy(loan);
      if (!ch.notify(loan)) await ch.drained();
    }
  }

  async prepareHandOff(source: Buffer): Promise<Buffer> {
    const loan = await this.loanOf(source.length);
    source.copy(loan);
    return loan;
  }

  handOff(message: Buffer): Promise<Buffer> {
    return lastValueFrom(this.channel!.request(message));
  }

  /** A loan now, or once the peer has released enough (backpressure of an exhausted pool). */
  private loanOf(size: number): Promise<Buffer> | Buffer {
    try {
      return this.channel!.loan(size);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_POOL_EXHAUSTED') throw err;
      return this.channel!.waitForLoan(size);
    }
  }

  /** sendMessages() with one notifyMany() call per GROUP messages. */
  private async sendGroups(n: number, payloads: readonly Buffer[], stampSeq: boolean): Promise<void> {
    const ch = this.channel!;
    const count = payloads.length;
    // Slot j carries payloads[j % count] and the length is a multiple of count, so message i
    // carries payloads[i % count]. Stamped again for every group: notifyMany() has copied them
    // when it returns.
    const length = Math.max(1, Math.floor(Math.min(GROUP, n) / count)) * count;
    const group = Array.from({ length }, (_, j) => Buffer.from(payloads[j % count]));
    for (let i = 0; i < n; i += length) {
      const messages = n - i >= length ? group : group.slice(0, n - i);
      if (stampSeq) for (let j = 0; j < messages.length; j++) messages[j].writeUInt32LE(i + j, 0);
      // Some wait in the queue: let the peer catch up first, as with notify().
      if (!ch.notifyMany(messages)) await ch.drained();
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
  const server = new Channel(name, 'server', { poolSize: POOL_SIZE, borrow: true });
  const life = peerLifecycle(() => server.close());
  try {
    await server.open();
  } catch (err) {
    life.fail(err);
    return;
  }
  // One of the two streams at a time: a subscriber of notifications$ makes the channel give
  // every notification a Buffer of its own, which the batch row must not pay for.
  let receiving: Subscription | undefined;
  let batches = false;
  // Produced payloads come as borrowed views: each goes back once checked.
  let releasing = false;
  const receive = (batch: boolean) => {
    if (receiving !== undefined && batch === batches) return;
    receiving?.unsubscribe();
    batches = batch;
    const error = (err: unknown) => console.error('peer-shm notifications:', err);
    receiving = batch
      ? server.notificationBatches$.subscribe({ next: (b) => onBatch(logic, b), error })
      : server.notifications$.subscribe({
          next: (data) => {
            logic.onMessage(data.length >= 4 ? data.readUInt32LE(0) : -1, data);
            if (releasing) server.release(data);
          },
          error,
        });
  };
  receive(false);
  server.requests$
    .pipe(
      handleWith((data: Buffer) => {
        if (data[0] === OP_ECHO) return of(data);
        if (data[0] === OP_HANDOFF) {
          const answer = handOffAnswer(data);
          server.release(data);
          return of(answer);
        }
        const msg = decodeJson<Control>(data);
        // Before the answer, so before the messages it announces.
        if (msg.op === 'expect') {
          receive(msg.kind === 'notify' && msg.batch === true);
          releasing = msg.kind === 'payload' && msg.produced === true;
        }
        return Promise.resolve(logic.control(msg)).then(encodeJson);
      }),
    )
    .subscribe({ error: (err: unknown) => console.error('peer-shm requests:', err) });
  life.ready();
}

/** Checks every message of the batch as the notifications$ handler does, with no view of each. */
function onBatch(logic: PeerLogic, batch: NotificationBatch): void {
  const bytes = batch.bytes;
  for (let i = 0; i < batch.length; i++) {
    const size = batch.size(i);
    logic.onNotification(size >= 4 ? bytes.readUInt32LE(batch.offset(i)) : -1, size);
  }
}
