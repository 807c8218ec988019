import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import type { ChannelState } from '../../lib/index';
import type { ThreadCommand, ThreadConfig, ThreadErrorReport, ThreadMessage } from './thread-messages';

const THREAD_SCRIPT = path.join(__dirname, 'thread-channel.js');
const GRACEFUL_STOP_MS = 3000;

/** An error the worker reported (with its `code`). */
export class ThreadError extends Error {
  readonly code?: string;

  constructor(report: ThreadErrorReport) {
    super(report.message);
    this.name = 'ThreadError';
    this.code = report.code;
  }
}

/**
 * A Channel in a worker_threads Worker of this process (spec/helpers/thread-channel.ts):
 * `const thread = await ThreadPeer.spawn({ name, mode: 'client' }); await thread.request('x');`
 */
export class ThreadPeer {
  private static readonly live = new Set<ThreadPeer>();

  /** Resolves once the worker's channel is open; rejects with its open() error. */
  readonly ready: Promise<number>;
  /** Resolves with the worker's exit code. */
  readonly exited: Promise<number>;
  /** Text of every notification the worker's channel received, in order. */
  readonly notifications: string[] = [];
  /** Every state the worker's channel went through. */
  readonly states: ChannelState[] = [];

  private readonly worker: Worker;
  private nextSeq = 1;
  private readonly replies = new Map<
    number,
    { resolve: (v: string | undefined) => void; reject: (e: Error) => void }
  >();
  private listeners: (() => void)[] = [];
  private running = true;

  private constructor(readonly config: ThreadConfig) {
    this.worker = new Worker(THREAD_SCRIPT, { workerData: config });
    ThreadPeer.live.add(this);
    let onReady: (threadId: number) => void = () => undefined;
    let onOpenFailed: (err: Error) => void = () => undefined;
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onOpenFailed = reject;
    });
    this.ready.catch(() => undefined);
    this.worker.on('message', (message: ThreadMessage) => {
      switch (message.type) {
        case 'ready':
          onReady(message.threadId);
          break;
        case 'open-failed':
          onOpenFailed(new ThreadError(message.error));
          break;
        case 'state':
          this.states.push(message.state);
          break;
        case 'notification':
          this.notifications.push(message.text);
          break;
        case 'reply': {
          const reply = this.replies.get(message.seq);
          this.replies.delete(message.seq);
          if (message.error !== undefined) reply?.reject(new ThreadError(message.error));
          else reply?.resolve(message.result);
          break;
        }
      }
      for (const listener of this.listeners) listener();
    });
    const failures: Error[] = [];
    this.worker.on('error', (err) => failures.push(err));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.running = false;
        ThreadPeer.live.delete(this);
        const gone = new Error(`worker exited (code ${code})${failures.length > 0 ? `: ${failures[0].message}` : ''}`);
        onOpenFailed(gone);
        for (const reply of this.replies.values()) reply.reject(gone);
        this.replies.clear();
        resolve(code);
      });
    });
  }

  /** Starts a worker and waits until its channel is open. */
  static async spawn(config: ThreadConfig): Promise<ThreadPeer> {
    const peer = new ThreadPeer(config);
    await peer.ready;
    return peer;
  }

  /** afterEach: stop every worker still running. */
  static async stopAll(): Promise<void> {
    await Promise.all([...ThreadPeer.live].map((peer) => peer.stop()));
  }

  get isRunning(): boolean {
    return this.running;
  }

  get threadId(): number {
    return this.worker.threadId;
  }

  command(command: ThreadCommand): Promise<string | undefined> {
    if (!this.running) return Promise.reject(new Error('worker has exited'));
    const seq = this.nextSeq++;
    return new Promise((resolve, reject) => {
      this.replies.set(seq, { resolve, reject });
      this.worker.postMessage({ seq, command });
    });
  }

  notify(text: string): Promise<void> {
    return this.command({ cmd: 'notify', text }).then(() => undefined);
  }

  async request(text: string): Promise<string> {
    return (await this.command({ cmd: 'request', text })) ?? '';
  }

  handleUpper(): Promise<void> {
    return this.command({ cmd: 'handle-upper' }).then(() => undefined);
  }

  close(): Promise<void> {
    return this.command({ cmd: 'close' }).then(() => undefined);
  }

  /** Resolves once `condition` holds, re-checked after every message from the worker. */
  until(condition: (peer: ThreadPeer) => boolean): Promise<void> {
    if (condition(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition(this)) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      this.listeners.push(check);
      void this.exited.then(() => reject(new Error('worker exited while waiting')));
    });
  }

  /** Ends the worker as it is, open channel and all. */
  async terminate(): Promise<number> {
    await this.worker.terminate();
    return this.exited;
  }

  /** Closes the worker's channel (a server unlinks its segment), then ends the worker. */
  async stop(): Promise<void> {
    if (!this.running) return;
    const closed = this.ready.then(() => this.close()).catch(() => undefined);
    await Promise.race([closed, new Promise((r) => setTimeout(r, GRACEFUL_STOP_MS))]);
    await this.terminate();
  }
}
