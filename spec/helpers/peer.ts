import { fork } from 'node:child_process';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import type {
  ErrorReport,
  FloodResult,
  HandlerSpec,
  HandlerStats,
  NotifyResult,
  ParentMessage,
  PayloadSpec,
  PeerCommand,
  PeerConfig,
  PeerEvent,
  PeerMessage,
  RequestManyResult,
  RequestResult,
} from './peer-messages';
import type { Summary } from './payload';

export type { CodecName, HandlerSpec, PeerConfig } from './peer-messages';

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

const PEER_SCRIPT = path.join(__dirname, 'peer-body.js');
const GRACEFUL_STOP_MS = 3000;

/** The way to a peer: a child process, or a worker thread of this process. */
interface PeerLink {
  readonly pid: number;
  readonly threadId: number;
  send(message: ParentMessage): void;
  /** A process gets `signal`; a worker thread, which has none, is terminated. */
  kill(signal: NodeJS.Signals): void;
}

interface LinkEvents {
  message: (message: PeerMessage) => void;
  /** How it ended, for the errors of what was still waiting. */
  exit: (how: string) => void;
}

function childProcess(config: PeerConfig, on: LinkEvents): PeerLink {
  // runAs: setpriv drops to that user, then execs node with the IPC channel fork() set up.
  const asUser =
    config.runAs === undefined
      ? {}
      : {
          execPath: 'setpriv',
          execArgv: [`--reuid=${config.runAs.uid}`, `--regid=${config.runAs.gid}`, '--clear-groups', process.execPath],
        };
  const child = fork(PEER_SCRIPT, [JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
    env: { ...process.env, ...config.env },
    ...asUser,
  });
  child.on('message', on.message);
  child.on('exit', (code, signal) => on.exit(`peer exited (code ${code}, signal ${signal})`));
  return {
    pid: child.pid ?? -1,
    threadId: 0,
    send: (message) => child.send(message),
    kill: (signal) => child.kill(signal),
  };
}

function workerThread(config: PeerConfig, on: LinkEvents): PeerLink {
  if (config.runAs !== undefined) throw new Error('a peer in a worker thread runs as this process does: no runAs');
  const worker = new Worker(PEER_SCRIPT, { workerData: config, env: { ...process.env, ...config.env } });
  const failures: Error[] = [];
  worker.on('message', on.message);
  worker.on('error', (err) => failures.push(err));
  worker.on('exit', (code) =>
    on.exit(`worker exited (code ${code})${failures.length > 0 ? `: ${failures[0].message}` : ''}`),
  );
  return {
    pid: process.pid,
    threadId: worker.threadId,
    send: (message) => worker.postMessage(message),
    kill: () => void worker.terminate(),
  };
}

/**
 * A Channel in another Node process (spec/helpers/peer-body.ts), or in a worker thread of this
 * one (`thread: true`), driven from the test:
 * `const peer = await Peer.spawn({ name, mode: 'server' }); await peer.handle({ kind: 'echo' });`
 * With `codec`, a TypedChannel over it: payloads are `{ value }`, and what it received comes
 * back as values (`R`) instead of Summaries of bytes.
 */
export class Peer<R = Summary> {
  private static readonly live = new Set<Peer<unknown>>();

  /** Resolves once the peer's channel is open; rejects with its open() error. */
  readonly ready: Promise<void>;
  /** Resolves when the process or thread has ended. */
  readonly exited: Promise<void>;

  private readonly link: PeerLink;
  private nextSeq = 1;
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly received: PeerEvent[] = [];
  private waiters: Waiter[] = [];
  private exitReason: string | undefined;

  private constructor(readonly config: PeerConfig) {
    let ended: () => void = () => undefined;
    this.exited = new Promise((resolve) => (ended = resolve));
    const on: LinkEvents = {
      message: (message) => this.onMessage(message),
      exit: (how) => {
        Peer.live.delete(this);
        const fatal = this.received.find((e): e is EventOf<'fatal'> => e.event === 'fatal');
        this.exitReason = `${how}${fatal ? `: ${fatal.error.message}` : ''}`;
        const gone = new Error(this.exitReason);
        for (const reply of this.replies.values()) reply.reject(gone);
        this.replies.clear();
        for (const waiter of this.waiters) waiter.reject(gone);
        this.waiters = [];
        ended();
      },
    };
    this.link = config.thread === true ? workerThread(config, on) : childProcess(config, on);
    Peer.live.add(this);
    this.ready = Promise.race([
      this.waitFor('ready').then(() => undefined),
      this.waitFor('open-failed').then((e) => Promise.reject(new PeerError(e.error))),
    ]);
    // A test that expects open() to fail awaits `ready` itself; don't report it as unhandled.
    this.ready.catch(() => undefined);
  }

  /** Starts a peer; await `ready` before using it. */
  static start<R = Summary>(config: PeerConfig): Peer<R> {
    return new Peer<R>(config);
  }

  /** Starts a peer and waits until its channel is open. */
  static async spawn<R = Summary>(config: PeerConfig): Promise<Peer<R>> {
    const peer = new Peer<R>(config);
    await peer.ready;
    return peer;
  }

  /** afterEach: stop every peer still running. */
  static async stopAll(): Promise<void> {
    await Promise.all([...Peer.live].map((peer) => peer.stop()));
  }

  /** The peer's process (this one, for a thread). */
  get pid(): number {
    return this.link.pid;
  }

  /** The peer's worker thread (0, the main thread, for a process). */
  get threadId(): number {
    return this.link.threadId;
  }

  get isRunning(): boolean {
    return this.exitReason === undefined;
  }

  /** Sends a command; resolves with the peer's result, rejects with a PeerError it reported. */
  command<T>(command: PeerCommand): Promise<T> {
    if (this.exitReason !== undefined) return Promise.reject(new Error(this.exitReason));
    const seq = this.nextSeq++;
    return new Promise<T>((resolve, reject) => {
      this.replies.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.link.send({ seq, command });
    });
  }

  flood(count: number, size: number, requests: number): Promise<FloodResult> {
    return this.command({ cmd: 'flood', count, size, requests });
  }

  notify(spec: PayloadSpec & { count?: number; sizes?: number[] }): Promise<NotifyResult<R>> {
    return this.command({ cmd: 'notify', ...spec });
  }

  request(spec: PayloadSpec & { timeout?: number }): Promise<RequestResult<R>> {
    return this.command({ cmd: 'request', ...spec });
  }

  /** The text of the one value `text` is answered with; rejects with the error it is answered with. */
  async ask(text: string): Promise<string> {
    const { values, error } = await this.command<RequestResult>({ cmd: 'request', text });
    if (error !== undefined) throw new PeerError(error);
    return values[0]?.text ?? '';
  }

  /** `count` requests at once (texts `${prefix}${i}`): each one's answer or error code, in order. */
  requestMany(count: number, prefix: string): Promise<RequestManyResult> {
    return this.command({ cmd: 'request-many', count, prefix });
  }

  handle(handler: HandlerSpec): Promise<void> {
    return this.command({ cmd: 'handle', handler });
  }

  unhandle(): Promise<void> {
    return this.command({ cmd: 'unhandle' });
  }

  /** Waits until the peer has received `count` notifications; returns all it received. */
  async collect(count: number): Promise<R[]> {
    return (await this.command<{ notifications: R[] }>({ cmd: 'collect', count })).notifications;
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

  /** Ends the peer as it is, open channel and all: a process by `signal`, a thread by terminate(). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.isRunning) this.link.kill(signal);
    await this.exited;
  }

  /** Closes the peer's channel (so a server unlinks its segment), then ends the peer. */
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
