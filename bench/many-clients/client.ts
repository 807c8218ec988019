// Many clients per server: what the two kinds of client process share (./shm.ts, ./socket.ts
// open the ends). A client connects, makes its warm-up round trips, says ready, and then for
// each 'go' of the bench process makes sequential round trips in the window it names and
// answers with its count and latencies (../peer-many-client.ts). Nothing here loads shmchannel:
// the socket's processes run without it.
import * as fs from 'node:fs';

import { now, OP_ECHO, threadCpuUs } from '../common';
import { peerLifecycle } from '../transports/transport';

export type ManyKind = 'shm' | 'socket';

export const SIZE = 64;

/** The bench process's order to a client: round trips from now on, timed from startAt to endAt. */
export interface Go {
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
  /** Context switches of all the client's threads over the window; NaN without /proc. */
  switches: Switches;
}

/**
 * Context switches of a process's threads: voluntary (it slept: a futex, epoll, a read) and
 * involuntary (the scheduler took the core away).
 */
export interface Switches {
  voluntary: number;
  involuntary: number;
}

/** The context switches of every thread of `pid` so far (/proc/<pid>/task/<tid>/status). */
export function switchesOf(pid: number): Switches {
  const sum = { voluntary: 0, involuntary: 0 };
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
        sum.voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
        sum.involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
      } catch {
        // The thread ended meanwhile.
      }
    }
    return sum;
  } catch {
    return { voluntary: NaN, involuntary: NaN };
  }
}

export const switchesSince = (a: Switches, b: Switches): Switches => ({
  voluntary: b.voluntary - a.voluntary,
  involuntary: b.involuntary - a.involuntary,
});

export function isRun(msg: unknown): msg is ClientRun {
  return typeof msg === 'object' && msg !== null && (msg as { op?: unknown }).op === 'run';
}

/** One client's end: sequential round trips. */
export interface ClientEnd {
  roundTrip(payload: Buffer): Promise<Buffer>;
  close(): Promise<void> | void;
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
  const switches0 = switchesOf(process.pid);
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
  const switches = switchesSince(switches0, switchesOf(process.pid));
  return { op: 'run', count, latencies: latencies.slice(0, count), mismatches, cpuUs, switches };
}

/**
 * Client process (peer-many-client.js): opens its end, makes `warmup` round trips, then runs
 * each 'go'.
 */
export async function runClient(open: () => Promise<ClientEnd>, warmup: number): Promise<void> {
  let end: ClientEnd | undefined;
  const life = peerLifecycle(() => end?.close());
  try {
    end = await open();
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

/** An optional number as a peer's argument ('' for unset); numberArg() reads it back. */
export const argOf = (v: number | undefined): string => (v === undefined ? '' : String(v));

export const numberArg = (arg: string | undefined): number | undefined =>
  arg === undefined || arg === '' ? undefined : Number(arg);
