// ZeroMQ over ipc:// through the `zeromq` npm package (v6): one PUSH -> PULL pipe per
// direction (the bench process sends on one, the peer answers on the other; a single
// bidirectional DEALER pair, with a send blocked at the high-water mark while a receive is
// pending on the same socket, hung here once in several runs). Each message is two parts:
//   [ header: u32 type | u32 id (request id or sequence number), payload ]
// Headers (<= 128 B) are copied by zeromq at send(), so one header Buffer is reused; larger
// payloads are sent zero-copy (they are never modified). Backpressure is zeromq's own: each
// send() is awaited (it resolves once the message is queued, and waits at the high-water mark).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  decodeJson,
  encodeJson,
  FrameType as Type,
  handOffAnswer,
  OP_HANDOFF,
  ownCopy,
  PeerLogic,
  PendingReplies,
  type Control,
  type ControlReply,
} from '../common';
import { forkPeer, peerLifecycle, type Peer, type Transport } from './transport';

type Zmq = typeof import('zeromq');

/** zeromq, or the reason it cannot be used here. */
export function loadZmq(): { zmq: Zmq } | { error: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { zmq: require('zeromq') as Zmq };
  } catch (err) {
    return { error: err instanceof Error ? err.message.split('\n')[0] : String(err) };
  }
}

function header(buf: Buffer, type: number, id: number): Buffer {
  buf.writeUInt32LE(type, 0);
  buf.writeUInt32LE(id, 4);
  return buf;
}

let instances = 0;

export class ZmqTransport implements Transport {
  readonly label = 'zeromq ipc';
  readonly key = 'zmq';
  private readonly file = path.join(os.tmpdir(), `shmch-bench-${process.pid}-${++instances}`);
  private socket: InstanceType<Zmq['Push']> | undefined;
  private inbox: InstanceType<Zmq['Pull']> | undefined;
  private peer: Peer | undefined;
  private readonly head = Buffer.alloc(8);
  private readonly replies = new PendingReplies();
  private handOffBuffer: Buffer | undefined;

  constructor(private readonly zmq: Zmq) {}

  async setup(): Promise<void> {
    this.peer = forkPeer('zmq', [this.file]);
    await this.peer.ready; // the peer has bound
    const socket = new this.zmq.Push({ linger: 0 });
    this.socket = socket;
    socket.connect(`ipc://${this.file}.in`);
    const inbox = new this.zmq.Pull({ linger: 0 });
    this.inbox = inbox;
    inbox.connect(`ipc://${this.file}.out`);
    void this.receiveLoop(inbox);
  }

  private async receiveLoop(socket: InstanceType<Zmq['Pull']>): Promise<void> {
    try {
      for await (const [head, body] of socket) {
        this.replies.frame(head.readUInt32LE(0), head.readUInt32LE(4), body);
      }
    } catch (err) {
      if (!socket.closed) console.error('bench zmq receive:', err);
    }
  }

  roundTrip(payload: Buffer): Promise<Buffer> {
    return this.replies.request((id) => this.socket!.send([header(this.head, Type.REQUEST, id), payload]));
  }

  control(msg: Control): Promise<ControlReply> {
    return this.replies.control((id) => this.socket!.send([header(this.head, Type.CONTROL, id), encodeJson(msg)]));
  }

  async sendMessages(n: number, payloads: readonly Buffer[]): Promise<void> {
    const socket = this.socket!;
    const head = this.head;
    const count = payloads.length;
    for (let i = 0; i < n; i++) {
      await socket.send([header(head, Type.MESSAGE, i), payloads[i % count]]);
    }
  }

  async sendProduced(n: number, sources: readonly Buffer[]): Promise<void> {
    const socket = this.socket!;
    const head = this.head;
    const count = sources.length;
    for (let i = 0; i < n; i++) {
      // A new buffer each time: zeromq sends large parts by reference and does not say when it
      // is done with one, so none can be refilled safely.
      await socket.send([header(head, Type.MESSAGE, i), ownCopy(undefined, sources[i % count])]);
    }
  }

  async prepareHandOff(source: Buffer): Promise<Buffer> {
    // Reused: the previous message has arrived whole when this one is filled.
    return (this.handOffBuffer = ownCopy(this.handOffBuffer, source));
  }

  handOff(message: Buffer): Promise<Buffer> {
    return this.roundTrip(message);
  }

  async teardown(): Promise<void> {
    this.socket?.close();
    this.inbox?.close();
    this.socket = undefined;
    this.inbox = undefined;
    await this.peer?.stop();
    this.peer = undefined;
    removeFiles(this.file);
  }

  emergencyCleanup(): void {
    this.socket?.close();
    this.inbox?.close();
    this.peer?.child.kill('SIGTERM');
    removeFiles(this.file);
  }
}

function removeFiles(base: string): void {
  for (const file of [`${base}.in`, `${base}.out`]) {
    try {
      fs.unlinkSync(file);
    } catch {
      // not there
    }
  }
}

export async function runZmqPeer(file: string): Promise<void> {
  const loaded = loadZmq();
  const logic = new PeerLogic();
  if ('error' in loaded) {
    peerLifecycle(() => undefined).fail(new Error(loaded.error));
    return;
  }
  const socket = new loaded.zmq.Pull({ linger: 0 });
  const out = new loaded.zmq.Push({ linger: 0 });
  const life = peerLifecycle(() => {
    socket.close();
    out.close();
    removeFiles(file); // zeromq may not have unlinked them yet when the process exits
  });
  try {
    await socket.bind(`ipc://${file}.in`);
    await out.bind(`ipc://${file}.out`);
  } catch (err) {
    life.fail(err);
    return;
  }
  life.ready();
  const head = Buffer.alloc(8);
  // Only one send may be in progress: control replies that resolve later queue behind others.
  let sending: Promise<void> = Promise.resolve();
  let later = 0;
  const sendLater = (type: number, id: number, body: Buffer) => {
    later++;
    sending = sending.then(() => out.send([header(head, type, id), body])).finally(() => later--);
  };
  try {
    for await (const [h, body] of socket) {
      const type = h.readUInt32LE(0);
      const id = h.readUInt32LE(4);
      switch (type) {
        case Type.MESSAGE:
          logic.onMessage(id, body);
          break;
        case Type.REQUEST:
          if (later > 0) await sending;
          await out.send([header(head, Type.RESPONSE, id), body[0] === OP_HANDOFF ? handOffAnswer(body) : body]);
          break;
        case Type.CONTROL:
          void Promise.resolve(logic.control(decodeJson<Control>(body))).then((reply) =>
            sendLater(Type.CONTROL_REPLY, id, encodeJson(reply)),
          );
          break;
      }
    }
  } catch (err) {
    if (!socket.closed) console.error('peer-zmq receive:', err);
  }
}
