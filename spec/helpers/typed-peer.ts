import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import type { ErrorReport } from './peer-messages';
import type {
  TypedHandlerKind,
  TypedPeerCommand,
  TypedPeerConfig,
  TypedPeerEvent,
  TypedPeerMessage,
  TypedRequestResult,
} from './typed-peer-messages';

const SCRIPT = path.join(__dirname, 'typed-peer-process.js');
const GRACEFUL_STOP_MS = 3000;

/**
 * A TypedChannel in another Node process (spec/helpers/typed-peer-process.ts):
 * `const peer = await TypedPeer.spawn({ name, mode: 'server', codec: 'json' });`
 */
export class TypedPeer {
  private static readonly live = new Set<TypedPeer>();

  readonly exited: Promise<void>;
  private readonly child: ChildProcess;
  private nextSeq = 1;
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly received: TypedPeerEvent[] = [];
  private readonly listeners: ((event: TypedPeerEvent) => void)[] = [];
  private exitReason: string | undefined;

  private constructor(readonly config: TypedPeerConfig) {
    this.child = fork(SCRIPT, [JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    TypedPeer.live.add(this);
    this.child.on('message', (message: TypedPeerMessage) => this.onMessage(message));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        TypedPeer.live.delete(this);
        const fatal = this.received.find((e) => e.event === 'fatal');
        this.exitReason = `typed peer exited (code ${code}, signal ${signal})${fatal ? `: ${fatal.error.message}` : ''}`;
        for (const reply of this.replies.values()) reply.reject(new Error(this.exitReason));
        this.replies.clear();
        resolve();
      });
    });
  }

  /** Forks a typed peer and waits until its channel is open. */
  static async spawn(config: TypedPeerConfig): Promise<TypedPeer> {
    const peer = new TypedPeer(config);
    const first = await Promise.race([
      peer.waitFor((e) => e.event === 'ready' || e.event === 'open-failed'),
      peer.exited.then(() => Promise.reject(new Error(peer.exitReason))),
    ]);
    if (first.event === 'open-failed') throw Object.assign(new Error(first.error.message), first.error);
    return peer;
  }

  /** afterEach: close every live peer's channel, then end its process. */
  static async stopAll(): Promise<void> {
    await Promise.all([...TypedPeer.live].map((peer) => peer.stop()));
  }

  get isRunning(): boolean {
    return this.exitReason === undefined;
  }

  /** Fatal errors the peer reported (an uncaught exception, a stream that errored). */
  get fatalErrors(): ErrorReport[] {
    return this.received.flatMap((e) => (e.event === 'fatal' ? [e.error] : []));
  }

  command<R>(command: TypedPeerCommand): Promise<R> {
    if (this.exitReason !== undefined) return Promise.reject(new Error(this.exitReason));
    const seq = this.nextSeq++;
    return new Promise<R>((resolve, reject) => {
      this.replies.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ seq, command });
    });
  }

  handle(kind: TypedHandlerKind): Promise<void> {
    return this.command({ cmd: 'handle', kind });
  }

  notify(value: unknown): Promise<void> {
    return this.command({ cmd: 'notify', value });
  }

  request(value: unknown): Promise<TypedRequestResult> {
    return this.command({ cmd: 'request', value });
  }

  /** Waits until the peer has received `count` decoded notifications; returns them all. */
  collect(count: number): Promise<unknown[]> {
    return this.command({ cmd: 'collect', count });
  }

  codecErrors(): Promise<ErrorReport[]> {
    return this.command({ cmd: 'codec-errors' });
  }

  /** The first event (past or future) that satisfies `matches`. */
  waitFor(matches: (e: TypedPeerEvent) => boolean): Promise<TypedPeerEvent> {
    const past = this.received.find(matches);
    if (past !== undefined) return Promise.resolve(past);
    return new Promise((resolve) => {
      const listener = (e: TypedPeerEvent) => {
        if (!matches(e)) return;
        this.listeners.splice(this.listeners.indexOf(listener), 1);
        resolve(e);
      };
      this.listeners.push(listener);
    });
  }

  async stop(): Promise<void> {
    if (!this.isRunning) return;
    const closed = this.command({ cmd: 'close' }).catch(() => undefined);
    await Promise.race([closed, new Promise((r) => setTimeout(r, GRACEFUL_STOP_MS))]);
    if (this.isRunning) this.child.kill('SIGKILL');
    await this.exited;
  }

  private onMessage(message: TypedPeerMessage): void {
    if (message.type === 'reply') {
      const reply = this.replies.get(message.seq);
      this.replies.delete(message.seq);
      if (message.error !== undefined) reply?.reject(Object.assign(new Error(message.error.message), message.error));
      else reply?.resolve(message.result);
      return;
    }
    const { type: _type, ...event } = message;
    this.received.push(event);
    for (const listener of [...this.listeners]) listener(event);
  }
}
