// Node `net` over a Unix-domain socket with length-prefixed frames: the baseline, written
// the way a careful engineer would.
//   frame = u32 payload length | u32 type | u32 id (request id or sequence number) | payload
//   - small frames are copied into a reusable 64 KiB chunk and written once per event-loop
//     turn (or when the chunk fills): one write() for many messages, no per-message Buffer;
//   - large payloads are written as header + payload under cork()/uncork() (one writev, no copy);
//   - the receiving peer reads with `onread` into one reused 256 KiB buffer (no per-read
//     allocation) and hands out views of complete frames; a frame that straddles reads is
//     assembled in one reused buffer (handlers consume frames synchronously);
//   - the sender respects backpressure: write() returning false -> wait for 'drain'.
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
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

const HEADER = 12;
const CHUNK = 64 * 1024;
/** Payloads at least this big are not copied into the chunk but written by reference. */
const LARGE = 16 * 1024;
const READ_BUFFER = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/** Batches frames into chunk-sized writes. */
export class FrameWriter {
  private chunk: Buffer = Buffer.allocUnsafeSlow(CHUNK);
  private used = 0;
  private readonly spare: Buffer[] = [];
  private flushScheduled = false;
  private readonly flushTick = () => {
    this.flushScheduled = false;
    this.flush();
  };

  constructor(private readonly socket: net.Socket) {}

  /**
   * Queues one frame; false when the socket asks the sender to wait for 'drain'. `written`: for
   * a large payload (written by reference), called once the socket is done with it.
   */
  send(type: number, id: number, payload: Uint8Array, written?: () => void): boolean {
    const length = payload.length;
    if (length >= LARGE) {
      this.flush(); // keep frames in order
      const header = Buffer.allocUnsafe(HEADER);
      header.writeUInt32LE(length, 0);
      header.writeUInt32LE(type, 4);
      header.writeUInt32LE(id, 8);
      this.socket.cork();
      this.socket.write(header);
      const ok = this.socket.write(payload, written);
      this.socket.uncork();
      return ok;
    }
    if (this.used + HEADER + length > CHUNK) this.flush();
    const c = this.chunk;
    const at = this.used;
    c.writeUInt32LE(length, at);
    c.writeUInt32LE(type, at + 4);
    c.writeUInt32LE(id, at + 8);
    c.set(payload, at + HEADER);
    this.used = at + HEADER + length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushTick);
    }
    return !this.socket.writableNeedDrain;
  }

  /** Writes what is batched now. */
  flush(): void {
    if (this.used === 0) return;
    const chunk = this.chunk;
    const used = this.used;
    this.chunk = this.spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
    this.used = 0;
    // The chunk may be referenced until the write completes; recycle it then.
    this.socket.write(chunk.subarray(0, used), () => this.spare.push(chunk));
  }

  /** Flushes and, if the socket is over its high-water mark, waits for 'drain'. */
  async drain(): Promise<void> {
    this.flush();
    if (this.socket.writableNeedDrain) await once(this.socket, 'drain');
  }
}

/** Splits a byte stream into frames; `data` handed to onFrame is only valid during the call. */
export class FrameReader {
  private readonly header = Buffer.alloc(HEADER);
  private headerFill = 0;
  private body: Buffer | undefined;
  private assembly: Buffer = Buffer.allocUnsafeSlow(CHUNK);
  private bodyFill = 0;
  private bodyType = 0;
  private bodyId = 0;

  constructor(private readonly onFrame: (type: number, id: number, data: Buffer) => void) {}

  push(chunk: Buffer, end = chunk.length): void {
    let at = 0;
    while (at < end) {
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyFill, end - at);
        chunk.copy(this.body, this.bodyFill, at, at + n);
        this.bodyFill += n;
        at += n;
        if (this.bodyFill === this.body.length) {
          const body = this.body;
          this.body = undefined;
          this.onFrame(this.bodyType, this.bodyId, body);
        }
        continue;
      }
      if (this.headerFill > 0 || end - at < HEADER) {
        const n = Math.min(HEADER - this.headerFill, end - at);
        chunk.copy(this.header, this.headerFill, at, at + n);
        this.headerFill += n;
        at += n;
        if (this.headerFill < HEADER) return;
        this.headerFill = 0;
        this.startBody(this.header.readUInt32LE(0), this.header.readUInt32LE(4), this.header.readUInt32LE(8));
        continue;
      }
      const length = chunk.readUInt32LE(at);
      const type = chunk.readUInt32LE(at + 4);
      const id = chunk.readUInt32LE(at + 8);
      at += HEADER;
      if (end - at >= length) {
        this.onFrame(type, id, chunk.subarray(at, at + length));
        at += length;
      } else {
        this.startBody(length, type, id);
      }
    }
  }

  private startBody(length: number, type: number, id: number): void {
    if (length === 0) {
      this.onFrame(type, id, EMPTY);
      return;
    }
    // Frames are consumed synchronously, so one buffer serves every frame that straddles
    // reads; it grows to the largest frame seen (a fresh multi-MiB Buffer per message would
    // cost a page fault per 4 KiB on first touch).
    if (this.assembly.length < length)
      this.assembly = Buffer.allocUnsafeSlow(Math.max(length, 2 * this.assembly.length));
    this.body = this.assembly.subarray(0, length);
    this.bodyFill = 0;
    this.bodyType = type;
    this.bodyId = id;
  }
}

let instances = 0;

export class SocketTransport implements Transport {
  readonly label = 'unix socket';
  readonly key = 'socket';
  private readonly path = path.join(os.tmpdir(), `shmch-bench-${process.pid}-${++instances}.sock`);
  private server: net.Server | undefined;
  private socket: net.Socket | undefined;
  private writer: FrameWriter | undefined;
  private peer: Peer | undefined;
  private readonly replies = new PendingReplies();
  /** The hand-off's message: reused, as the previous one has arrived whole when it is refilled. */
  private handOffBuffer: Buffer | undefined;
  /** Produced payloads' buffers the socket is done with, by size. */
  private readonly spares = new Map<number, Buffer[]>();

  async setup(): Promise<void> {
    removeFile(this.path);
    const server = net.createServer();
    this.server = server;
    server.listen(this.path);
    await once(server, 'listening');
    const connected = once(server, 'connection') as Promise<[net.Socket]>;
    this.peer = forkPeer('socket', [this.path]);
    const [socket] = await connected;
    await this.peer.ready;
    server.close(); // one connection is all we need
    this.socket = socket;
    this.writer = new FrameWriter(socket);
    const reader = new FrameReader((type, id, data) => this.replies.frame(type, id, data));
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', (err) => console.error('bench socket:', err.message));
  }

  roundTrip(payload: Buffer): Promise<Buffer> {
    return this.replies.request((id) => this.writer!.send(Type.REQUEST, id, payload));
  }

  control(msg: Control): Promise<ControlReply> {
    return this.replies.control((id) => this.writer!.send(Type.CONTROL, id, encodeJson(msg)));
  }

  async sendMessages(n: number, payloads: readonly Buffer[]): Promise<void> {
    const w = this.writer!;
    const count = payloads.length;
    for (let i = 0; i < n; i++) {
      if (!w.send(Type.MESSAGE, i, payloads[i % count])) await w.drain();
    }
    w.flush();
  }

  async sendProduced(n: number, sources: readonly Buffer[]): Promise<void> {
    const w = this.writer!;
    const count = sources.length;
    // A buffer goes back to the spares once the socket has written it; they outlive the run,
    // as a sender's buffers would (a fresh one faults its pages in).
    let spares = this.spares.get(sources[0].length);
    if (spares === undefined) this.spares.set(sources[0].length, (spares = []));
    for (let i = 0; i < n; i++) {
      const source = sources[i % count];
      const buffer = spares.pop() ?? Buffer.allocUnsafeSlow(source.length);
      source.copy(buffer);
      if (!w.send(Type.MESSAGE, i, buffer, () => spares.push(buffer))) await w.drain();
    }
    w.flush();
  }

  async prepareHandOff(source: Buffer): Promise<Buffer> {
    return (this.handOffBuffer = ownCopy(this.handOffBuffer, source));
  }

  handOff(message: Buffer): Promise<Buffer> {
    return this.roundTrip(message);
  }

  async teardown(): Promise<void> {
    this.socket?.end();
    this.socket = undefined;
    await this.peer?.stop();
    this.peer = undefined;
    this.server?.close();
    removeFile(this.path);
  }

  emergencyCleanup(): void {
    this.socket?.destroy();
    this.peer?.child.kill('SIGTERM');
    removeFile(this.path);
  }
}

function removeFile(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // not there
  }
}

export function runSocketPeer(socketPath: string): void {
  const logic = new PeerLogic();
  let writer: FrameWriter | undefined;
  const reader = new FrameReader((type, id, data) => {
    switch (type) {
      case Type.MESSAGE:
        logic.onMessage(id, data);
        return;
      case Type.REQUEST:
        if (data[0] === OP_HANDOFF) {
          writer!.send(Type.RESPONSE, id, handOffAnswer(data));
          return;
        }
        // `data` views the read buffer: small frames are copied into the chunk right away,
        // a large one must be copied before it is written by reference.
        writer!.send(Type.RESPONSE, id, data.length >= LARGE ? Buffer.from(data) : data);
        return;
      case Type.CONTROL:
        void Promise.resolve(logic.control(decodeJson<Control>(data))).then((reply) =>
          writer!.send(Type.CONTROL_REPLY, id, encodeJson(reply)),
        );
        return;
    }
  });
  const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER);
  const socket = net.connect({
    path: socketPath,
    onread: {
      buffer: readBuffer,
      callback: (nread: number, buf: Uint8Array) => {
        reader.push(buf as Buffer, nread);
        return true;
      },
    },
  });
  const life = peerLifecycle(() => {
    socket.destroy();
  });
  socket.once('connect', () => {
    writer = new FrameWriter(socket);
    life.ready();
  });
  socket.on('error', (err) => life.fail(err));
}
