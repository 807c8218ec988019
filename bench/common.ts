// What both sides of every transport share: the control messages, the receiving side's
// bookkeeping (counting, verifying, CPU marks), and small helpers.
import * as fs from 'node:fs';

/** A control request from the bench process to a peer (JSON on every transport). */
export type Control =
  | { op: 'cpuMark' }
  | { op: 'cpuRead' }
  /**
   * Arm the receiver: `n` one-way messages follow. With `batch`, a receiver that has a batch
   * API (shmchannel's notificationBatches$) takes them through it; the others as without.
   */
  | { op: 'expect'; kind: 'notify'; n: number; size: number; batch?: boolean }
  /**
   * Payloads: the i-th message must equal payloadSet(size, seed)[i % PAYLOAD_SET_SIZE], byte for
   * byte. With `produced`, the sender copies each one into a buffer of its own (shmchannel: a
   * loan) before sending it, and a receiver that borrows gives each message back once checked.
   */
  | { op: 'expect'; kind: 'payload'; n: number; size: number; seed: number; produced?: boolean }
  /** Answered once all expected messages arrived (they were sent before it, in order). */
  | { op: 'wait' };

export interface CpuReply {
  /** µs of user and system CPU since the last cpuMark, all threads of the peer process. */
  user: number;
  system: number;
  /** µs of wall time since the last cpuMark. */
  wall: number;
}

export interface WaitReply {
  received: number;
  /** Messages that failed verification (wrong sequence number, length or bytes). */
  bad: number;
  /** process.hrtime.bigint() (CLOCK_MONOTONIC, shared by all processes) when the last one arrived, as a string. */
  lastAt: string;
}

export type ControlReply = CpuReply | WaitReply | { ok: true };

/** First byte of a round-trip payload (a control request starts with '{'). */
export const OP_ECHO = 0x01;

/** First byte of a hand-off request: answered with HANDOFF_ANSWER_SIZE bytes, not an echo. */
export const OP_HANDOFF = 0x02;

export const HANDOFF_ANSWER_SIZE = 64;

/**
 * The receiver's part of a hand-off, the same on every transport: it reads the message's length,
 * first and last byte (it can read the whole message; it does not scan it) and answers with them
 * in 64 bytes, so the sender knows the bytes it handed over arrived.
 */
export function handOffAnswer(data: Uint8Array): Buffer {
  const answer = Buffer.alloc(HANDOFF_ANSWER_SIZE);
  answer.writeUInt32LE(data.length, 0);
  answer[4] = data[0];
  answer[5] = data[data.length - 1];
  return answer;
}

/** `source` copied into `buffer`, or into a new Buffer if `buffer` is missing or of another size. */
export function ownCopy(buffer: Buffer | undefined, source: Buffer): Buffer {
  const own = buffer?.length === source.length ? buffer : Buffer.allocUnsafeSlow(source.length);
  source.copy(own);
  return own;
}

/** Does `answer` say that `message` arrived whole? */
export function handOffConfirms(answer: Uint8Array, message: Uint8Array): boolean {
  return (
    answer.length === HANDOFF_ANSWER_SIZE &&
    Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength).readUInt32LE(0) === message.length &&
    answer[4] === message[0] &&
    answer[5] === message[message.length - 1]
  );
}

/** hrtime in ns as a bigint. */
export const now = (): bigint => process.hrtime.bigint();

/**
 * µs of CPU the threads of `pid` have run, from the scheduler's clock (the first field of
 * /proc/<pid>/task/<tid>/schedstat, in ns): exact, where getrusage() (process.cpuUsage())
 * charges whole timer ticks (4 ms at HZ=250) to whichever thread a tick finds running. A
 * thread that ends between two reads takes its time with it. NaN without schedstat.
 */
export function threadCpuUs(pid: number): number {
  try {
    let ns = 0;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The thread ended meanwhile.
      }
    }
    return ns / 1e3;
  } catch {
    return NaN;
  }
}

/** µs of user and system CPU of a process.cpuUsage() or a peer's CpuReply. */
export const cpuTotal = (c: { user: number; system: number }): number => c.user + c.system;

/** The pids of this process's children (/proc/self/task/<tid>/children). */
export function childPids(): number[] {
  try {
    return fs
      .readdirSync('/proc/self/task')
      .flatMap((tid) => fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(/\s+/))
      .filter((pid) => pid !== '')
      .map(Number);
  } catch {
    return [];
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Distinct payloads a payload scenario cycles through. */
export const PAYLOAD_SET_SIZE = 4;

/**
 * The payloads of a payload scenario: pseudo-random bytes (xorshift32 from `seed`), generated
 * alike on both sides so the receiver compares every byte it gets. A full comparison runs at
 * memory speed; a checksum (CRC-32 at ~7 GB/s here) would bound the payload rows itself.
 */
export function payloadSet(size: number, seed: number): Buffer[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: PAYLOAD_SET_SIZE }, () => {
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      payload[i] = x & 0xff;
    }
    return payload;
  });
}

/**
 * The receiving side of the scenarios, shared by every peer: answers control requests and
 * counts / verifies one-way messages. Transports call onMessage(seq, data) for each one;
 * `data` may be a view that is only valid during the call (verification is synchronous).
 * A notification read in place may come through onNotification(seq, size) instead.
 */
export class PeerLogic {
  private cpuMark = process.cpuUsage();
  private wallMark = now();
  private expected: Extract<Control, { op: 'expect' }> | undefined;
  private received = 0;
  private bad = 0;
  private lastAt = 0n;
  private waiter: ((reply: WaitReply) => void) | undefined;
  /** The payload set of the current payload scenario, and its size and seed. */
  private payloads: Buffer[] = [];
  private payloadKey = '';

  /** Answers a control request; 'wait' resolves once every expected message is in. */
  control(msg: Control): ControlReply | Promise<ControlReply> {
    switch (msg.op) {
      case 'cpuMark':
        this.cpuMark = process.cpuUsage();
        this.wallMark = now();
        return { ok: true };
      case 'cpuRead': {
        const d = process.cpuUsage(this.cpuMark);
        return { user: d.user, system: d.system, wall: Number(now() - this.wallMark) / 1e3 };
      }
      case 'expect':
        if (msg.kind === 'payload' && this.payloadKey !== `${msg.size}:${msg.seed}`) {
          this.payloads = payloadSet(msg.size, msg.seed);
          this.payloadKey = `${msg.size}:${msg.seed}`;
        }
        this.expected = msg;
        this.received = 0;
        this.bad = 0;
        this.lastAt = 0n;
        return { ok: true };
      case 'wait':
        if (this.expected === undefined || this.received >= this.expected.n) return this.waitReply();
        return new Promise<WaitReply>((resolve) => (this.waiter = resolve));
      default:
        throw new Error(`unknown control op ${JSON.stringify(msg)}`);
    }
  }

  /** One one-way message arrived; `seq` is its sequence number (ignored for payloads). */
  onMessage(seq: number, data: Uint8Array): void {
    this.arrived(seq, data.length, data);
  }

  /**
   * One notification of `size` bytes arrived, read where it lies (a batch's bytes at an offset)
   * instead of as a view: the same check as onMessage(), with no object per message.
   */
  onNotification(seq: number, size: number): void {
    this.arrived(seq, size, undefined);
  }

  private arrived(seq: number, size: number, data: Uint8Array | undefined): void {
    const e = this.expected;
    if (e === undefined) {
      this.bad++;
      return;
    }
    const i = this.received++;
    if (this.received === e.n) this.lastAt = now();
    if (size !== e.size) {
      this.bad++;
    } else if (e.kind === 'notify') {
      if (seq !== i) this.bad++;
    } else if (data === undefined || !this.payloads[i % PAYLOAD_SET_SIZE].equals(data)) {
      this.bad++;
    }
    if (this.received === e.n && this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w(this.waitReply());
    }
  }

  private waitReply(): WaitReply {
    return { received: this.received, bad: this.bad, lastAt: this.lastAt.toString() };
  }
}

export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function decodeJson<T>(data: Uint8Array): T {
  return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as T;
}

/** Frame types of the baseline transports (socket, ipc, zmq); shmchannel uses its own. */
export const enum FrameType {
  CONTROL = 1,
  CONTROL_REPLY = 2,
  REQUEST = 3,
  RESPONSE = 4,
  MESSAGE = 5,
}

/** What the bench side of a baseline transport awaits: one round trip at a time, control replies by id. */
export class PendingReplies {
  private nextId = 0;
  private roundTrip: ((data: Buffer) => void) | undefined;
  private readonly controls = new Map<number, (reply: ControlReply) => void>();

  /** `send(id)` sends the request; resolves with its response (rejects if the send does). */
  request(send: (id: number) => unknown): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.roundTrip = resolve;
      settle(send(this.allocate()), reject);
    });
  }

  /** `send(id)` sends the control message; resolves with its reply. */
  control(send: (id: number) => unknown): Promise<ControlReply> {
    return new Promise<ControlReply>((resolve, reject) => {
      const id = this.allocate();
      this.controls.set(id, resolve);
      settle(send(id), reject);
    });
  }

  response(data: Buffer): void {
    const resolve = this.roundTrip;
    this.roundTrip = undefined;
    resolve?.(data);
  }

  controlReply(id: number, reply: ControlReply): void {
    const resolve = this.controls.get(id);
    this.controls.delete(id);
    resolve?.(reply);
  }

  /** A RESPONSE or CONTROL_REPLY frame whose control reply travels as JSON; others are ignored. */
  frame(type: number, id: number, body: Buffer): void {
    if (type === FrameType.RESPONSE) this.response(body);
    else if (type === FrameType.CONTROL_REPLY) this.controlReply(id, decodeJson<ControlReply>(body));
  }

  private allocate(): number {
    this.nextId = (this.nextId + 1) >>> 0;
    return this.nextId;
  }
}

function settle(sent: unknown, reject: (err: unknown) => void): void {
  if (sent instanceof Promise) sent.catch(reject);
}
