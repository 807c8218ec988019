import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import type {
  CollectResult,
  ErrorReport,
  FloodResult,
  HandlerSpec,
  HandlerStats,
  NotifyResult,
  PayloadSpec,
  PeerCommand,
  PeerConfig,
  PeerEvent,
  PeerMessage,
  RequestResult,
} from './peer-messages';

export type { PeerConfig, HandlerSpec } from './peer-messages';

/** An error the peer reported (its `code`, `ownerPid`, ... are copied over). */
export class PeerError extends Error {
  readonly code?: string;
  readonly remoteCode?: string;
  readonly errno?: string;
  readonly ownerPid?: number;

  constructor(report: ErrorReport) {
    super(report.message);
    this.name = 'PeerError';
    Object.assign(this, report);
  }
}

type EventName = PeerEvent['event'];
type EventOf<E extends EventName> = Extract<PeerEvent, { event: E }>;

interface Waiter {
  event: EventName;
  matches: (event: PeerEvent) => boolean;
  resolve: (event: PeerEvent) => void;
  reject: (err: Error) => void;
}

const PEER_SCRIPT = path.join(__dirname, 'peer-process.js');
const GRACEFUL_STOP_MS = 3000;

/**
 * A Channel in another Node process (spec/helpers/peer-process.ts), driven from the test:
 * `const peer = await Peer.spawn({ name, mode: 'server' }); await peer.handle({ kind: 'echo' });`
 */
export class Peer {
  private static readonly live = new Set<Peer>();

  /** Resolves once the peer's channel is open; rejects with its open() error. */
  readonly ready: Promise<void>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;

  private readonly child: ChildProcess;
  private nextSeq = 1;
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly received: PeerEvent[] = [];
  private waiters: Waiter[] = [];
  private exitReason: string | undefined;

  private constructor(readonly config: PeerConfig) {
    // runAs: setpriv drops to that user, then execs node with the IPC channel fork() set up.
    const asUser =
      config.runAs === undefined
        ? {}
        : {
            execPath: 'setpriv',
            execArgv: [
              `--reuid=${config.runAs.uid}`,
              `--regid=${config.runAs.gid}`,
              '--clear-groups',
              process.execPath,
            ],
          };
    this.child = fork(PEER_SCRIPT, [JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...config.env },
      ...asUser,
    });
    Peer.live.add(this);
    this.child.on('message', (message: PeerMessage) => this.onMessage(message));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        Peer.live.delete(this);
        const fatal = this.received.find((e): e is EventOf<'fatal'> => e.event === 'fatal');
        this.exitReason = `peer exited (code ${code}, signal ${signal})${fatal ? `: ${fatal.error.message}` : ''}`;
        const gone = new Error(this.exitReason);
        for (const reply of this.replies.values()) reply.reject(gone);
        this.replies.clear();
        for (const waiter of this.waiters) waiter.reject(gone);
        this.waiters = [];
        resolve();
      });
    });
    this.ready = Promise.race([
      this.waitFor('ready').then(() => undefined),
      this.waitFor('open-failed').then((e) => Promise.reject(new PeerError(e.error))),
    ]);
    // A test that expects open() to fail awaits `ready` itself; don't report it as unhandled.
    this.ready.catch(() => undefined);
  }

  /** Forks a peer; await `ready` before using it. */
  static start(config: PeerConfig): Peer {
    return new Peer(config);
  }

  /** Forks a peer and waits until its channel is open. */
  static async spawn(config: PeerConfig): Promise<Peer> {
    const peer = new Peer(config);
    await peer.ready;
    return peer;
  }

  /** afterEach: stop every peer still running. */
  static async stopAll(): Promise<void> {
    await Promise.all([...Peer.live].map((peer) => peer.stop()));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get isRunning(): boolean {
    return this.exitReason === undefined;
  }

  /** Sends a command; resolves with the peer's result, rejects with a PeerError it reported. */
  command<R>(command: PeerCommand): Promise<R> {
    if (this.exitReason !== undefined) return Promise.reject(new Error(this.exitReason));
    const seq = this.nextSeq++;
    return new Promise<R>((resolve, reject) => {
      this.replies.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ seq, command });
    });
  }

  flood(count: number, size: number, requests: number): Promise<FloodResult> {
    return this.command({ cmd: 'flood', count, size, requests });
  }

  notify(spec: PayloadSpec & { count?: number; sizes?: number[] }): Promise<NotifyResult> {
    return this.command({ cmd: 'notify', ...spec });
  }

  request(spec: PayloadSpec & { timeout?: number }): Promise<RequestResult> {
    return this.command({ cmd: 'request', ...spec });
  }

  handle(handler: HandlerSpec): Promise<void> {
    return this.command({ cmd: 'handle', handler });
  }

  unhandle(): Promise<void> {
    return this.command({ cmd: 'unhandle' });
  }

  /** Waits until the peer has received `count` notifications; returns all it received. */
  async collect(count: number): Promise<CollectResult['notifications']> {
    return (await this.command<CollectResult>({ cmd: 'collect', count })).notifications;
  }

  stats(): Promise<HandlerStats> {
    return this.command({ cmd: 'stats' });
  }

  close(): Promise<void> {
    return this.command({ cmd: 'close' });
  }

  /** The first event `event` (past or future) that satisfies `matches`. */
  waitFor<E extends EventName>(event: E, matches: (e: EventOf<E>) => boolean = () => true): Promise<EventOf<E>> {
    const test = (e: PeerEvent) => e.event === event && matches(e as EventOf<E>);
    const past = this.received.find(test);
    if (past !== undefined) return Promise.resolve(past as EventOf<E>);
    if (this.exitReason !== undefined) return Promise.reject(new Error(this.exitReason));
    return new Promise((resolve, reject) => {
      this.waiters.push({ event, matches: test, resolve: resolve as (e: PeerEvent) => void, reject });
    });
  }

  /** Every event `event` received so far. */
  events<E extends EventName>(event: E): EventOf<E>[] {
    return this.received.filter((e): e is EventOf<E> => e.event === event);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.isRunning) this.child.kill(signal);
    await this.exited;
  }

  /** Closes the peer's channel (so a server unlinks its segment), then ends the process. */
  async stop(): Promise<void> {
    if (!this.isRunning) return;
    const closed = this.ready.then(() => this.close()).catch(() => undefined);
    await Promise.race([closed, new Promise((r) => setTimeout(r, GRACEFUL_STOP_MS))]);
    await this.kill();
  }

  private onMessage(message: PeerMessage): void {
    if (message.type === 'reply') {
      const reply = this.replies.get(message.seq);
      this.replies.delete(message.seq);
      if (message.error !== undefined) reply?.reject(new PeerError(message.error));
      else reply?.resolve(message.result);
      return;
    }
    const { type: _type, ...event } = message;
    this.received.push(event);
    const matched = this.waiters.filter((w) => w.matches(event));
    this.waiters = this.waiters.filter((w) => !matched.includes(w));
    for (const waiter of matched) waiter.resolve(event);
  }
}
