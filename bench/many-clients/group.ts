// Many clients per server, the bench process's side: a server process and its client
// processes (a ClientGroup), forked as peer-many-server.js and peer-many-client.js. The bench
// process drives the clients over their fork IPC channel: a 'go' names a common window on
// CLOCK_MONOTONIC (shared by every process), each client answers with its count and latencies.
// Nothing of that crosses the transport being measured, and nothing crosses IPC in the window.
// The CPU and resources of the processes are read from /proc, from outside.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { SharedMemory } from '../../lib/index';
import { now, sleep, threadCpuUs } from '../common';
import { percentileSorted } from '../stats';
import { forkPeer, isLifecycle, withTimeout, type Peer } from '../transports/transport';
import {
  argOf,
  isRun,
  switchesOf,
  switchesSince,
  type ClientRun,
  type Go,
  type ManyKind,
  type Switches,
} from './client';
import { removeFile } from './socket';

export type { ManyKind } from './client';

export const MANY_LABELS: Record<ManyKind, string> = { shm: 'shmchannel', socket: 'unix socket' };

/** Threads, descriptors and memory of a process, from /proc. */
export interface ProcessResources {
  threads: number;
  fds: number;
  /** VmRSS and its shared-memory part (RssShmem: mapped pages of /dev/shm segments), KiB. */
  rssKiB: number;
  rssShmemKiB: number;
}

export function resourcesOf(pid: number): ProcessResources {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return {
    threads: fs.readdirSync(`/proc/${pid}/task`).length,
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    rssKiB: kib('VmRSS'),
    rssShmemKiB: kib('RssShmem'),
  };
}

/** µs of CPU of the main thread of `pid` (its event loop), from the scheduler's clock; NaN without. */
export function mainThreadCpuUs(pid: number): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e3;
  } catch {
    return NaN;
  }
}

/** What one run of a group found: every client's round trips in the common window. */
export interface GroupRun {
  /** Round trips per second, all clients: the total over the window's length. */
  rate: number;
  /** Of every round trip in the window, all clients together, µs. */
  p50: number;
  p99: number;
  /** Round trips of each client in the window. */
  perClient: number[];
  mismatches: number;
  /** % of one core over the window: the server process (all threads, its main thread) and all clients. */
  serverPct: number;
  serverMainPct: number;
  clientsPct: number;
  /** µs of CPU per round trip: the server process's, and all clients' together. */
  serverUsPerRt: number;
  clientsUsPerRt: number;
  /** Context switches per round trip: of the server process's threads, and of all clients' together. */
  serverSwitchesPerRt: Switches;
  clientsSwitchesPerRt: Switches;
}

let groups = 0;

/**
 * A server process and its client processes. Started with start(); every client is connected
 * and has made its warm-up round trips (so the server has taken it) when start() resolves.
 */
export class ClientGroup {
  private static readonly live = new Set<ClientGroup>();
  readonly address: string;
  private server: Peer | undefined;
  private readonly clients: Peer[] = [];

  constructor(
    readonly kind: ManyKind,
    /** shmchannel's options of the server (both) and of the clients (pollWindowUs); unset: the defaults. */
    private readonly options: { maxClients?: number; pollWindowUs?: number } = {},
  ) {
    const n = ++groups;
    this.address =
      kind === 'shm'
        ? `/shmch-bench-${process.pid}-many-${n}`
        : path.join(os.tmpdir(), `shmch-bench-${process.pid}-many-${n}.sock`);
  }

  get label(): string {
    return MANY_LABELS[this.kind];
  }

  get serverPid(): number {
    return this.server?.child.pid ?? -1;
  }

  get clientPids(): number[] {
    return this.clients.map((c) => c.child.pid ?? -1);
  }

  get size(): number {
    return this.clients.length;
  }

  /** Forks the server and waits until it listens. */
  async start(): Promise<void> {
    ClientGroup.live.add(this);
    const { maxClients, pollWindowUs } = this.options;
    this.server = forkPeer('many-server', [this.kind, this.address, argOf(maxClients), argOf(pollWindowUs)]);
    await this.server.ready;
  }

  /**
   * Adds clients until there are `total`, `inParallel` starting at a time (a burst of Node
   * start-ups is CPU the machine's other users feel); each makes `warmup` round trips first.
   */
  async grow(total: number, warmup: number, inParallel = 4): Promise<void> {
    while (this.clients.length < total) {
      const batch = Array.from({ length: Math.min(inParallel, total - this.clients.length) }, () =>
        forkPeer(
          'many-client',
          [this.kind, this.address, String(warmup), argOf(this.options.pollWindowUs)],
          'advanced',
        ),
      );
      this.clients.push(...batch);
      await Promise.all(batch.map((c) => c.ready));
    }
  }

  /**
   * One run: every client makes round trips from now, untimed for `leadMs` (all of them busy
   * when the window opens), then timed for `windowMs`.
   */
  async run(windowMs: number, leadMs: number): Promise<GroupRun> {
    const startAt = now() + BigInt(Math.round(leadMs * 1e6));
    const endAt = startAt + BigInt(Math.round(windowMs * 1e6));
    const go: Go = { op: 'go', startAt: startAt.toString(), endAt: endAt.toString() };
    const runs = Promise.all(this.clients.map((c) => clientRun(c, go)));
    runs.catch(() => undefined);
    const serverPid = this.serverPid;
    await sleep(Number(startAt - now()) / 1e6);
    const server0 = threadCpuUs(serverPid);
    const main0 = mainThreadCpuUs(serverPid);
    const switches0 = switchesOf(serverPid);
    await sleep(Number(endAt - now()) / 1e6);
    const server1 = threadCpuUs(serverPid);
    const main1 = mainThreadCpuUs(serverPid);
    const serverSwitches = switchesSince(switches0, switchesOf(serverPid));
    const found = await runs;
    const windowUs = windowMs * 1e3;
    const count = found.reduce((sum, r) => sum + r.count, 0);
    const all = new Float64Array(count);
    let at = 0;
    for (const r of found) {
      all.set(r.latencies, at);
      at += r.count;
    }
    all.sort();
    const clientsUs = found.reduce((sum, r) => sum + r.cpuUs, 0);
    const perRt = (s: Switches): Switches => ({ voluntary: s.voluntary / count, involuntary: s.involuntary / count });
    const clientSwitches = found.reduce(
      (sum, r) => ({
        voluntary: sum.voluntary + r.switches.voluntary,
        involuntary: sum.involuntary + r.switches.involuntary,
      }),
      { voluntary: 0, involuntary: 0 },
    );
    return {
      rate: count / (windowUs / 1e6),
      p50: percentileSorted(all, 50),
      p99: percentileSorted(all, 99),
      perClient: found.map((r) => r.count),
      mismatches: found.reduce((sum, r) => sum + r.mismatches, 0),
      serverPct: ((server1 - server0) / windowUs) * 100,
      serverMainPct: ((main1 - main0) / windowUs) * 100,
      clientsPct: (clientsUs / windowUs) * 100,
      serverUsPerRt: (server1 - server0) / count,
      clientsUsPerRt: clientsUs / count,
      serverSwitchesPerRt: perRt(serverSwitches),
      clientsSwitchesPerRt: perRt(clientSwitches),
    };
  }

  /** Stops `n` clients (the last ones started) and waits for their processes to exit. */
  async shrink(n: number): Promise<void> {
    const leaving = this.clients.splice(Math.max(0, this.clients.length - n), n);
    await Promise.all(leaving.map((c) => c.stop()));
  }

  /** Stops every client, then the server. */
  async stop(): Promise<void> {
    await this.shrink(this.clients.length);
    await this.server?.stop();
    this.server = undefined;
    this.removeLeftovers();
    ClientGroup.live.delete(this);
  }

  /** The server closes (and so unlinks) its segments; this only catches a server that died. */
  private removeLeftovers(): void {
    if (this.kind === 'socket') {
      removeFile(this.address);
      return;
    }
    const base = this.address.slice(1);
    let entries: string[] = [];
    try {
      entries = fs.readdirSync('/dev/shm').filter((e) => e === base || e.startsWith(`${base}~`));
    } catch {
      return;
    }
    for (const e of entries) {
      try {
        SharedMemory.unlink(`/${e}`);
      } catch {
        // gone meanwhile
      }
    }
  }

  /** Groups left running when the bench exits (a signal, a failure) are killed. */
  static killAll(): void {
    for (const g of ClientGroup.live) {
      for (const c of g.clients) c.child.kill('SIGTERM');
      g.server?.child.kill('SIGTERM');
    }
  }
}

process.once('exit', () => ClientGroup.killAll());

/** Sends `go` to a client and resolves with its run; rejects if it fails, exits or hangs. */
function clientRun(client: Peer, go: Go): Promise<ClientRun> {
  const { child } = client;
  const answer = new Promise<ClientRun>((resolve, reject) => {
    const onMessage = (msg: unknown) => {
      if (isRun(msg)) {
        done();
        resolve(msg);
      } else if (isLifecycle(msg) && msg.lifecycle === 'error') {
        done();
        reject(new Error(`client ${child.pid}: ${msg.message ?? 'failed'}`));
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`client ${child.pid} exited (${code ?? signal}) during a run`));
    };
    const done = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  child.send(go);
  const windowMs = Number(BigInt(go.endAt) - now()) / 1e6;
  return withTimeout(answer, windowMs + 60_000, `client ${child.pid} run`);
}
