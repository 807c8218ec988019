// child_process IPC: process.send()/'message' on the channel fork() sets up, with
// serialization 'advanced' (V8 structured clone) so Buffers travel as bytes, not JSON arrays.
//   message = { t: type, id: request id or sequence number, d: Buffer | control JSON }
// Backpressure: send() returns false when its backlog is too big; the sender then waits for
// the completion callback of that message.
import type { ChildProcess } from 'node:child_process';

import {
  FrameType as Type,
  handOffAnswer,
  OP_HANDOFF,
  ownCopy,
  PeerLogic,
  PendingReplies,
  type Control,
  type ControlReply,
} from '../common';
import { forkPeer, isLifecycle, peerLifecycle, type Peer, type Transport } from './transport';

interface IpcMessage {
  t: Type;
  id: number;
  d?: Buffer;
  c?: Control | ControlReply;
}

export class IpcTransport implements Transport {
  readonly label = 'child_process IPC';
  readonly key = 'ipc';
  private peer: Peer | undefined;
  private child: ChildProcess | undefined;
  private readonly replies = new PendingReplies();
  /** The hand-off's message: reused (send() has serialized the previous one). */
  private handOffBuffer: Buffer | undefined;
  private sent = 0;
  private completed = 0;
  private waitFor = -1;
  private wake: (() => void) | undefined;
  private readonly onSent = () => {
    if (++this.completed >= this.waitFor && this.wake !== undefined) {
      const w = this.wake;
      this.wake = undefined;
      w();
    }
  };

  async setup(): Promise<void> {
    this.peer = forkPeer('ipc', [], 'advanced');
    this.child = this.peer.child;
    this.child.on('message', (msg: IpcMessage) => {
      if (isLifecycle(msg)) return;
      if (msg.t === Type.RESPONSE) this.replies.response(msg.d!);
      else if (msg.t === Type.CONTROL_REPLY) this.replies.controlReply(msg.id, msg.c as ControlReply);
    });
    await this.peer.ready;
  }

  roundTrip(payload: Buffer): Promise<Buffer> {
    return this.replies.request((id) => this.child!.send({ t: Type.REQUEST, id, d: payload } satisfies IpcMessage));
  }

  control(msg: Control): Promise<ControlReply> {
    return this.replies.control((id) => this.child!.send({ t: Type.CONTROL, id, c: msg } satisfies IpcMessage));
  }

  sendMessages(n: number, payloads: readonly Buffer[]): Promise<void> {
    const count = payloads.length;
    return this.send(n, (i) => payloads[i % count]);
  }

  /** Sends n messages, message i carrying payloadOf(i). */
  private async send(n: number, payloadOf: (i: number) => Buffer): Promise<void> {
    const child = this.child!;
    const msg: IpcMessage = { t: Type.MESSAGE, id: 0, d: undefined };
    for (let i = 0; i < n; i++) {
      msg.id = i;
      msg.d = payloadOf(i);
      // Serialized synchronously, so one message object can be reused.
      const ok = child.send(msg, this.onSent);
      this.sent++;
      if (!ok) {
        this.waitFor = this.sent;
        if (this.completed < this.waitFor) await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }

  async sendProduced(n: number, sources: readonly Buffer[]): Promise<void> {
    // send() serializes at once: one buffer serves every message.
    let buffer: Buffer | undefined;
    const count = sources.length;
    await this.send(n, (i) => (buffer = ownCopy(buffer, sources[i % count])));
  }

  async prepareHandOff(source: Buffer): Promise<Buffer> {
    return (this.handOffBuffer = ownCopy(this.handOffBuffer, source));
  }

  handOff(message: Buffer): Promise<Buffer> {
    return this.roundTrip(message);
  }

  async teardown(): Promise<void> {
    await this.peer?.stop();
    this.peer = undefined;
    this.child = undefined;
  }

  emergencyCleanup(): void {
    this.child?.kill('SIGTERM');
  }
}

export function runIpcPeer(): void {
  const logic = new PeerLogic();
  const send = (m: IpcMessage) => process.send!(m);
  const life = peerLifecycle(() => undefined);
  process.on('message', (msg: IpcMessage) => {
    if (isLifecycle(msg)) return;
    switch (msg.t) {
      case Type.MESSAGE:
        logic.onMessage(msg.id, msg.d!);
        return;
      case Type.REQUEST:
        send({ t: Type.RESPONSE, id: msg.id, d: msg.d![0] === OP_HANDOFF ? handOffAnswer(msg.d!) : msg.d });
        return;
      case Type.CONTROL:
        void Promise.resolve(logic.control(msg.c as Control)).then((reply) =>
          send({ t: Type.CONTROL_REPLY, id: msg.id, c: reply }),
        );
        return;
    }
  });
  life.ready();
}
