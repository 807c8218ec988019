// The interface every transport offers the bench process, and the child-process plumbing
// they share: each transport runs its other side in a forked peer, dist/bench/peer-<kind>.js.
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

import type { Control, ControlReply } from '../common';

export interface Transport {
  /** Row label in the table, e.g. 'unix socket'. */
  readonly label: string;
  /** Short key used in JSON, env filters and file names, e.g. 'socket'. */
  readonly key: string;
  /** Forks the peer and connects to it. */
  setup(): Promise<void>;
  /** One request with `payload`; resolves with the response (an echo of it). One in flight. */
  roundTrip(payload: Buffer): Promise<Buffer>;
  /** One control request; resolves with the peer's answer. */
  control(msg: Control): Promise<ControlReply>;
  /**
   * Sends n one-way messages, message i carrying payloads[i % payloads.length] and sequence
   * number i, as fast as the transport allows while respecting its backpressure. With
   * `stampSeq` the transport may write i into the first 4 bytes of the payload if it has no
   * header of its own to carry it. With `grouped`, a transport that can send many messages
   * with one call (shmchannel's notifyMany()) sends them in groups; the others send as they
   * always do. Resolves once all are handed to the transport.
   */
  sendMessages(n: number, payloads: readonly Buffer[], stampSeq: boolean, grouped?: boolean): Promise<void>;
  /**
   * Sends n one-way messages as sendMessages() does, except that the sender produces each
   * message's bytes: it copies sources[i % sources.length] into a buffer it then sends
   * (shmchannel: a loan out of its pool, waiting for one when the pool is exhausted; the others
   * a buffer of their own, reused where the transport says when it is done with it).
   */
  sendProduced(n: number, sources: readonly Buffer[]): Promise<void>;
  /**
   * A message ready to hand off: a copy of `source` in a buffer of the sender's (shmchannel: a
   * loan), made before the clock starts. handOff() sends it.
   */
  prepareHandOff(source: Buffer): Promise<Buffer>;
  /** One request carrying `message` (from prepareHandOff()); resolves with the peer's 64 B answer. */
  handOff(message: Buffer): Promise<Buffer>;
  /** Closes everything and waits for the peer to exit. Idempotent. */
  teardown(): Promise<void>;
  /** Best-effort synchronous cleanup on SIGINT: kill the peer, remove files. */
  emergencyCleanup(): void;
}

/** Lifecycle messages on the fork IPC channel (the IPC transport also carries data there). */
export interface Lifecycle {
  lifecycle: 'ready' | 'exit' | 'error';
  message?: string;
}

export function isLifecycle(msg: unknown): msg is Lifecycle {
  return typeof msg === 'object' && msg !== null && 'lifecycle' in msg;
}

export interface Peer {
  child: ChildProcess;
  /** Resolves when the peer says ready; rejects if it reports an error or exits first. */
  ready: Promise<void>;
  /** Resolves when the peer process has exited. */
  exited: Promise<void>;
  /** Asks the peer to close its side and exit, then waits for it (kills it after a grace period). */
  stop(): Promise<void>;
}

const PEER_EXIT_GRACE_MS = 5000;

export function forkPeer(kind: string, args: string[], serialization: 'json' | 'advanced' = 'json'): Peer {
  const script = path.join(__dirname, '..', `peer-${kind}.js`);
  const child = fork(script, args, {
    serialization,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let exitedFlag = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => ((exitedFlag = true), resolve())));
  const ready = new Promise<void>((resolve, reject) => {
    const onMessage = (msg: unknown) => {
      if (!isLifecycle(msg)) return;
      if (msg.lifecycle === 'ready') resolve();
      else if (msg.lifecycle === 'error') reject(new Error(`peer-${kind}: ${msg.message ?? 'failed'}`));
      child.off('message', onMessage);
    };
    child.on('message', onMessage);
    child.once('exit', (code, signal) =>
      reject(new Error(`peer-${kind} exited (${code ?? signal}) before it was ready`)),
    );
  });
  ready.catch(() => undefined);
  return {
    child,
    ready,
    exited,
    async stop() {
      if (exitedFlag) return;
      if (child.connected) child.send({ lifecycle: 'exit' } satisfies Lifecycle);
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), PEER_EXIT_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Peer side: reports ready, and runs `shutdown` (then exits) when the bench process asks,
 * disconnects, or a signal arrives.
 */
export function peerLifecycle(shutdown: () => Promise<void> | void): { ready(): void; fail(err: unknown): void } {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    Promise.resolve()
      .then(shutdown)
      .catch((err: unknown) => console.error('peer shutdown:', err))
      .finally(() => {
        process.disconnect?.();
        process.exit(0);
      });
  };
  process.on('message', (msg: unknown) => {
    if (isLifecycle(msg) && msg.lifecycle === 'exit') stop();
  });
  process.on('disconnect', stop);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return {
    ready: () => process.send?.({ lifecycle: 'ready' } satisfies Lifecycle),
    fail: (err: unknown) => {
      process.send?.({
        lifecycle: 'error',
        message: err instanceof Error ? err.message : String(err),
      } satisfies Lifecycle);
      stop();
    },
  };
}

/** Rejects if `p` has not settled within ms (a hung peer must not hang the benchmark). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
