// The transports of a run (BENCH_TRANSPORTS, the baseline always among them) and their pairs
// while they are up: every started pair is known here, so that a signal or a failure can
// still kill its peer.
import { BASELINE, STEP_TIMEOUT_MS } from './config';
import { progress } from './progress';
import { IpcTransport } from './transports/ipc';
import { ShmTransport } from './transports/shm';
import { SocketTransport } from './transports/socket';
import { withTimeout, type Transport } from './transports/transport';
import { loadZmq, ZmqTransport } from './transports/zmq';

export interface TransportEntry {
  key: string;
  label: string;
  /** Undefined if the transport cannot run here (`note` says why). */
  create: (() => Transport) | undefined;
  note?: string;
}

function transportEntries(only: string[]): TransportEntry[] {
  const zmq = loadZmq();
  const all: TransportEntry[] = [
    { key: 'shm', label: 'shmchannel', create: () => new ShmTransport() },
    { key: 'socket', label: 'unix socket', create: () => new SocketTransport() },
    { key: 'ipc', label: 'child_process IPC', create: () => new IpcTransport() },
    'zmq' in zmq
      ? { key: 'zmq', label: 'zeromq ipc', create: () => new ZmqTransport(zmq.zmq) }
      : { key: 'zmq', label: 'zeromq ipc', create: undefined, note: `skipped: zeromq cannot load (${zmq.error})` },
  ];
  return only.length === 0 ? all : all.filter((t) => only.includes(t.key) || t.key === BASELINE);
}

export class Lineup {
  readonly entries: TransportEntry[];
  /** The transports that can run here. */
  readonly runnable: TransportEntry[];
  /** Transports with a peer running. */
  private readonly live = new Set<Transport>();

  /** `only`: transport keys to run (all if empty). */
  constructor(only: string[]) {
    this.entries = transportEntries(only);
    this.runnable = this.entries.filter((e) => e.create !== undefined);
  }

  /** Starts the transport's pair; undefined (after `failed` is told why) if it does not start. */
  async start(
    entry: TransportEntry,
    failed: (reason: string) => void = (reason) => {
      entry.note = `failed to start: ${reason}`;
      progress(`${entry.label}: ${entry.note}`);
    },
  ): Promise<Transport | undefined> {
    const t = entry.create!();
    this.live.add(t);
    try {
      await withTimeout(t.setup(), STEP_TIMEOUT_MS, `${t.label} setup`);
      return t;
    } catch (err) {
      failed((err as Error).message);
      await t.teardown().catch(() => undefined);
      this.live.delete(t);
      return undefined;
    }
  }

  /** Closes the pair and waits for its peer to exit. */
  async stop(t: Transport): Promise<void> {
    await t.teardown();
    this.live.delete(t);
  }

  /** Kills the pair at once (a step failed or hung), best effort. */
  drop(t: Transport): void {
    this.live.delete(t);
    try {
      t.emergencyCleanup();
    } catch {
      // best effort
    }
  }

  /** Kills every pair still up (SIGINT, SIGTERM, a failed benchmark), best effort. */
  dropAll(): void {
    for (const t of [...this.live]) this.drop(t);
  }
}
