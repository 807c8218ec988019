// Many clients per server, both sides (scenarios rt_clients, idle_clients, clients_resources):
// one server process and N client processes, each client making sequential 64 B round trips.
//   shmchannel:  the server is `new Channel(name, 'server', { maxClients })` answering
//                requests$ with handleWith (an echo); each client an ordinary
//                `new Channel(name, 'client')` awaiting request(), one in flight.
//   unix socket: the server is a net.Server, each client a connection of its own, framed as
//                the socket transport frames (FrameWriter / FrameReader of ./transports/socket);
//                each connection echoes its requests.
// The bench process forks the server (peer-many-server.js) and the clients (peer-many-client.js)
// and drives the clients over their fork IPC channel: a 'go' names a common window on
// CLOCK_MONOTONIC (shared by every process), each client answers with its count and latencies.
// Nothing of that crosses the transport being measured, and nothing crosses IPC in the window.
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { lastValueFrom, of } from 'rxjs';

import { Channel, handleWith, SharedMemory } from '../lib/index';
import { FrameType as Type, now, OP_ECHO, PendingReplies, sleep, threadCpuUs } from './common';
import { percentileSorted } from './stats';
import { FrameReader, FrameWriter } from './transports/socket';
import { forkPeer, isLifecycle, peerLifecycle, withTimeout, type Peer } from './transports/transport';

export type ManyKind = 'shm' | 'socket';

export const MANY_LABELS: Record<ManyKind, string> = { shm: 'shmchannel', socket: 'unix socket' };

const SIZE = 64;

/** The bench process's order to a client: round trips from now on, timed from startAt to endAt. */
interface Go {
  op: 'go';
  /** CLOCK_MONOTONIC ns (process.hrtime.bigint()), as strings. */
  startAt: string;
  endAt: string;
}

/** A client's answer to a 'go'. */
export interface ClientRun {
  op: 'run';
  /** Round trips that started and ended within the window. */
  count: number;
  /** Their latencies in µs. */
  latencies: Float64Array;
  /** Replies that did not echo their request. */
  mismatches: number;
  /** µs of CPU of all the client's threads over the window (scheduler clock); NaN without schedstat. */
  cpuUs: number;
}

function isRun(msg: unknown): msg is ClientRun {
  return typeof msg === 'object' && msg !== null && (msg as { op?: unknown }).op === 'run';
}

/** One client's end: sequential round trips. */
interface ClientEnd {
  roundTrip(payload: Buffer): Promise<Buffer>;
  close(): Promise<void> | void;
}

async function openShmClient(name: string, pollWindowUs: number | undefined): Promise<ClientEnd> {
  const ch = new Channel(name, 'client', {
    connectTimeout: 30_000,
    ...(pollWindowUs === undefined ? {} : { pollWindowUs }),
  });
  await ch.open();
  return { roundTrip: (p) => lastValueFrom(ch.request(p)), close: () => ch.close() };
}

async function openSocketClient(socketPath: string): Promise<ClientEnd> {
  const replies = new PendingReplies();
  const reader = new FrameReader((type, id, data) => replies.frame(type, id, data));
  const socket = net.connect({
    path: socketPath,
    onread: {
      buffer: Buffer.allocUnsafeSlow(64 * 1024),
      callback: (nread: number, buf: Uint8Array) => {
        reader.push(buf as Buffer, nread);
        return true;
      },
    },
  });
  await once(socket, 'connect');
  socket.on('error', (err) => console.error('many-clients socket client:', err.message));
  const writer = new FrameWriter(socket);
  return {
    roundTrip: (p) => replies.request((id) => writer.send(Type.REQUEST, id, p)),
    close: () => void socket.end(),
  };
}

/**
 * Round trips until the window opens (untimed: every client is busy when it does), then
 * timed ones until it closes. A round trip that straddles the end is not counted.
 */
async function timedRun(end: ClientEnd, go: Go): Promise<ClientRun> {
  const ping = Buffer.alloc(SIZE, 0x5a);
  ping[0] = OP_ECHO;
  const startAt = BigInt(go.startAt);
  const endAt = BigInt(go.endAt);
  while (now() < startAt) await end.roundTrip(ping);
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let mismatches = 0;
  const cpu0 = threadCpuUs(process.pid);
  for (;;) {
    const t0 = now();
    if (t0 >= endAt) break;
    const reply = await end.roundTrip(ping);
    const t1 = now();
    if (t1 > endAt) break;
    if (reply.length !== SIZE || reply[SIZE - 1] !== ping[SIZE - 1]) mismatches++;
    if (count === latencies.length) {
      const grown = new Float64Array(2 * count);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = Number(t1 - t0) / 1e3;
  }
  const cpuUs = threadCpuUs(process.pid) - cpu0;
  return { op: 'run', count, latencies: latencies.slice(0, count), mismatches, cpuUs };
}

/**
 * Client process (peer-many-client.js): connects, makes `warmup` round trips, then runs each
 * 'go'. `pollWindowUs`: shmchannel's option, undefined for its default.
 */
export async function runManyClient(
  kind: ManyKind,
  address: string,
  warmup: number,
  pollWindowUs: number | undefined,
): Promise<void> {
  let end: ClientEnd | undefined;
  const life = peerLifecycle(() => end?.close());
  try {
    end = kind === 'shm' ? await openShmClient(address, pollWindowUs) : await openSocketClient(address);
    const ping = Buffer.alloc(SIZE, 0x5a);
    ping[0] = OP_ECHO;
    for (let i = 0; i < warmup; i++) await end.roundTrip(ping);
  } catch (err) {
    life.fail(err);
    return;
  }
  const client = end;
  process.on('message', (msg: unknown) => {
    if (typeof msg !== 'object' || msg === null || (msg as { op?: unknown }).op !== 'go') return;
    timedRun(client, msg as Go).then(
      (run) => process.send?.(run),
      (err: unknown) => life.fail(err),
    );
  });
  life.ready();
}

/**
 * Server process (peer-many-server.js): serves every client that comes until told to exit.
 * shmchannel's options: `maxClients` (undefined: its default), `pollWindowUs` (the same); the
 * socket server takes any number of clients.
 */
export async function runManyServer(
  kind: ManyKind,
  address: string,
  maxClients: number | undefined,
  pollWindowUs: number | undefined,
): Promise<void> {
  if (kind === 'shm') {
    const server = new Channel(address, 'server', {
      ...(maxClients === undefined ? {} : { maxClients }),
      ...(pollWindowUs === undefined ? {} : { pollWindowUs }),
    });
    const life = peerLifecycle(() => server.close());
    try {
      await server.open();
    } catch (err) {
      life.fail(err);
      return;
    }
    server.requests$
      .pipe(handleWith((data: Buffer) => of(data)))
      .subscribe({ error: (err: unknown) => console.error('many-clients shm server:', err) });
    life.ready();
    return;
  }
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const writer = new FrameWriter(socket);
    // `data` views this read's chunk; small frames are copied into the writer's chunk at once.
    const reader = new FrameReader((type, id, data) => {
      if (type === Type.REQUEST) writer.send(Type.RESPONSE, id, data);
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => undefined); // a client that goes away mid-write: nothing to answer
    socket.once('close', () => sockets.delete(socket));
  });
  removeFile(address);
  const life = peerLifecycle(() => {
    for (const s of sockets) s.destroy();
    server.close();
    removeFile(address);
  });
  server.once('error', (err) => life.fail(err));
  server.listen({ path: address, backlog: 512 }, () => life.ready());
}

function removeFile(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // not there
  }
}

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
    await sleep(Number(endAt - now()) / 1e6);
    const server1 = threadCpuUs(serverPid);
    const main1 = mainThreadCpuUs(serverPid);
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

/** An optional number as a peer's argument ('' for unset); numberArg() reads it back. */
const argOf = (v: number | undefined): string => (v === undefined ? '' : String(v));

export const numberArg = (arg: string | undefined): number | undefined =>
  arg === undefined || arg === '' ? undefined : Number(arg);

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
