// `npm run bench`: shmchannel against a Unix-domain socket, child_process IPC and ZeroMQ,
// each with its other side in a forked process. Prints a table of medians over several
// runs and their ratio to the Unix-socket row, writes bench/results/results.json and
// bench/results/chart.svg. No timed assertions: it reports, it does not fail on numbers.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { childPids, now, OP_ECHO, payloadSet, sleep, threadCpuUs, type CpuReply, type WaitReply } from './common';
import { deliveryFloor1m, deliveryFloor64 } from './floor';
import { median, percentiles, relativeSpread } from './stats';
import { renderChart } from './svg';
import { IpcTransport } from './transports/ipc';
import { ShmTransport } from './transports/shm';
import { SocketTransport } from './transports/socket';
import { withTimeout, type Transport } from './transports/transport';
import { loadZmq, ZmqTransport } from './transports/zmq';

// ---- configuration (environment) ----

const QUICK = process.env.BENCH_QUICK === '1';

function envInt(name: string, full: number, quick: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return QUICK ? quick : full;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return v;
}

const config = {
  quick: QUICK,
  /** Measured runs of every scenario (medians are over these). */
  runs: envInt('BENCH_RUNS', 7, 2),
  /** Round trips per run, and warm-up round trips (before the first run / before each run). */
  roundTrips: envInt('BENCH_RT_COUNT', 10_000, 1_000),
  roundTripWarmup: envInt('BENCH_RT_WARMUP', 2_000, 300),
  /**
   * How long a run of one-way notifications lasts, about: each transport sends as many as its
   * warm-up rate gives in that time. Fixed counts made the fast transports' runs last 20 ms,
   * which measured mostly scheduling noise (spreads of 60-80 %).
   */
  notifyMs: envInt('BENCH_NOTIFY_MS', 1_000, 200),
  /**
   * Payloads per run (sent back to back, each compared byte for byte on arrival). Enough that a
   * run lasts a good part of a second: shorter ones measured mostly scheduling noise.
   */
  payload1m: envInt('BENCH_PAYLOAD_1M_COUNT', 2048, 16),
  payload16m: envInt('BENCH_PAYLOAD_16M_COUNT', 128, 4),
  /** Idle measurement: how long a connected pair sits unused, and how many times. */
  idleMs: envInt('BENCH_IDLE_MS', 3_000, 1_000),
  /** How long a fresh idle pair sits before it is measured (see idleRun). */
  idleSettleMs: envInt('BENCH_IDLE_SETTLE_MS', 10_000, 1_000),
  idleRuns: envInt('BENCH_IDLE_RUNS', 3, 1),
  /** Comma-separated transport keys (shm, socket, ipc, zmq); default all. */
  transports: (process.env.BENCH_TRANSPORTS ?? '').split(',').filter(Boolean),
  /** Comma-separated scenario ids (rt, rt1core, notify64, notify4k, payload1m, payload16m, idle); default all. */
  scenarios: (process.env.BENCH_SCENARIOS ?? '').split(',').filter(Boolean),
};

/** A step (one run of one scenario on one transport) must not hang the benchmark. */
const STEP_TIMEOUT_MS = 90_000;

// ---- metrics ----

type Better = 'lower' | 'higher';

interface Metric {
  id: string;
  scenario: string;
  label: string;
  /** Column header in the table. */
  column: string;
  /** Group label in the chart. */
  short: string;
  unit: string;
  better: Better;
}

const METRICS: Metric[] = [
  {
    id: 'rt_p50',
    short: 'RT p50',
    scenario: 'rt',
    label: 'round trip 64 B p50',
    column: 'RT p50 µs',
    unit: 'µs',
    better: 'lower',
  },
  {
    id: 'rt_p99',
    short: 'RT p99',
    scenario: 'rt',
    label: 'round trip 64 B p99',
    column: 'RT p99 µs',
    unit: 'µs',
    better: 'lower',
  },
  {
    id: 'rt_cpu',
    short: 'CPU per RT',
    scenario: 'rt',
    label: 'CPU per round trip',
    column: 'CPU µs/RT',
    unit: 'µs CPU (both processes)',
    better: 'lower',
  },
  {
    id: 'rt1core_p50',
    short: 'RT p50, 1 core',
    scenario: 'rt1core',
    label: 'round trip 64 B p50, both processes on one core',
    column: '1-core RT p50 µs',
    unit: 'µs',
    better: 'lower',
  },
  {
    id: 'notify64',
    short: '64 B notify',
    scenario: 'notify64',
    label: '64 B notifications',
    column: '64 B msg/s',
    unit: 'msgs/s',
    better: 'higher',
  },
  {
    id: 'notify4k',
    short: '4 KiB notify',
    scenario: 'notify4k',
    label: '4 KiB notifications',
    column: '4 KiB msg/s',
    unit: 'msgs/s',
    better: 'higher',
  },
  {
    id: 'payload1m',
    short: '1 MiB payload',
    scenario: 'payload1m',
    label: '1 MiB payloads',
    column: '1 MiB GB/s',
    unit: 'GB/s',
    better: 'higher',
  },
  {
    id: 'payload16m',
    short: '16 MiB payload',
    scenario: 'payload16m',
    label: '16 MiB payloads',
    column: '16 MiB GB/s',
    unit: 'GB/s',
    better: 'higher',
  },
  {
    id: 'idle',
    short: 'idle CPU',
    scenario: 'idle',
    label: 'idle open channel',
    column: 'idle %core',
    unit: '% of one core (both processes)',
    better: 'lower',
  },
];

const BASELINE = 'socket';

interface TransportEntry {
  key: string;
  label: string;
  create: (() => Transport) | undefined;
  note?: string;
}

function transportEntries(): TransportEntry[] {
  const zmq = loadZmq();
  const all: TransportEntry[] = [
    { key: 'shm', label: 'shmchannel', create: () => new ShmTransport() },
    { key: 'socket', label: 'unix socket', create: () => new SocketTransport() },
    { key: 'ipc', label: 'child_process IPC', create: () => new IpcTransport() },
    'zmq' in zmq
      ? { key: 'zmq', label: 'zeromq ipc', create: () => new ZmqTransport(zmq.zmq) }
      : { key: 'zmq', label: 'zeromq ipc', create: undefined, note: `skipped: zeromq cannot load (${zmq.error})` },
  ];
  return config.transports.length === 0
    ? all
    : all.filter((t) => config.transports.includes(t.key) || t.key === BASELINE);
}

/** Per transport, per metric: the value of each run. */
type Samples = Map<string, Map<string, number[]>>;
/** Per transport, per scenario: extra figures for the JSON (CPU per message, verification). */
type Extras = Map<string, Record<string, unknown>>;

const samples: Samples = new Map();
/** Transports with a peer running: cleaned up on SIGINT/SIGTERM or failure. */
const live = new Set<Transport>();
const extras: Extras = new Map();
const problems: string[] = [];
/** What the reader should know that is not a verification problem (a scenario skipped). */
const notes: string[] = [];

function record(transport: string, metric: string, value: number): void {
  if (metric === 'warmup') return;
  let m = samples.get(transport);
  if (m === undefined) samples.set(transport, (m = new Map()));
  let list = m.get(metric);
  if (list === undefined) m.set(metric, (list = []));
  list.push(value);
}

function recordExtra(transport: string, key: string, value: unknown): void {
  if (key.startsWith('warmup')) return;
  let e = extras.get(transport);
  if (e === undefined) extras.set(transport, (e = {}));
  const list = (e[key] as unknown[] | undefined) ?? [];
  list.push(value);
  e[key] = list;
}

// ---- progress ----

const started = Date.now();
function progress(line: string): void {
  const s = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[${s}s] ${line}\n`);
}

// ---- scenarios ----

const cpuTotal = (c: { user: number; system: number }) => c.user + c.system;

/** Records `${scenario}_p50` and, as `rt`'s own rows or as extras, p99 and CPU per round trip. */
async function roundTripRun(
  t: Transport,
  scenario: 'rt' | 'rt1core',
  payload: Buffer,
  n: number,
  warmup: number,
): Promise<void> {
  for (let i = 0; i < warmup; i++) await t.roundTrip(payload);
  const lat = new Float64Array(n);
  await t.control({ op: 'cpuMark' });
  const cpu0 = process.cpuUsage();
  let mismatches = 0;
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const reply = await t.roundTrip(payload);
    lat[i] = Number(now() - t0) / 1e3;
    if (reply.length !== payload.length || reply[reply.length - 1] !== payload[payload.length - 1]) mismatches++;
  }
  const local = process.cpuUsage(cpu0);
  const peer = (await t.control({ op: 'cpuRead' })) as CpuReply;
  const [p50, p99] = percentiles(lat, [50, 99]);
  const cpu = (cpuTotal(local) + cpuTotal(peer)) / n;
  record(t.key, `${scenario}_p50`, p50);
  if (scenario === 'rt') {
    record(t.key, 'rt_p99', p99);
    record(t.key, 'rt_cpu', cpu);
  } else {
    recordExtra(t.key, `${scenario}_p99`, p99);
    recordExtra(t.key, `${scenario}_cpu`, cpu);
  }
  recordExtra(t.key, `${scenario}_cpu_split_us`, { bench: cpuTotal(local) / n, peer: cpuTotal(peer) / n });
  if (mismatches > 0) problems.push(`${t.label}: ${mismatches} round-trip replies did not echo the request`);
  progress(`  ${t.label.padEnd(18)} p50 ${p50.toFixed(1)} µs  p99 ${p99.toFixed(1)} µs  CPU ${cpu.toFixed(1)} µs/RT`);
}

/** Sends n one-way messages; returns seconds from the first send to the last arrival. */
async function oneWay(
  t: Transport,
  kind: 'notify' | 'payload',
  n: number,
  payloads: Buffer[],
  seed = 0,
): Promise<{ seconds: number; cpuPerMsg: number; ok: boolean }> {
  const size = payloads[0].length;
  await t.control(kind === 'notify' ? { op: 'expect', kind, n, size } : { op: 'expect', kind, n, size, seed });
  await t.control({ op: 'cpuMark' });
  const cpu0 = process.cpuUsage();
  const t0 = now();
  await t.sendMessages(n, payloads, kind === 'notify');
  const reply = (await withTimeout(
    t.control({ op: 'wait' }),
    STEP_TIMEOUT_MS,
    `${t.label} ${kind} x${n}`,
  )) as WaitReply;
  const local = process.cpuUsage(cpu0);
  const peer = (await t.control({ op: 'cpuRead' })) as CpuReply;
  const ok = reply.received === n && reply.bad === 0;
  if (!ok)
    problems.push(
      `${t.label}: ${kind} of ${size} B: ${reply.received}/${n} received, ${reply.bad} failed verification`,
    );
  const seconds = Number(BigInt(reply.lastAt) - t0) / 1e9;
  return { seconds, cpuPerMsg: (cpuTotal(local) + cpuTotal(peer)) / n, ok };
}

/** Sends n notifications of `size` bytes; records (unless a warm-up) and returns msgs/s. */
async function notifyRun(t: Transport, metric: string, n: number, size: number): Promise<number> {
  const payload = Buffer.alloc(size, 0xa5);
  const r = await oneWay(t, 'notify', n, [payload]);
  const rate = n / r.seconds;
  record(t.key, metric, rate);
  recordExtra(t.key, `${metric}_cpu_us_per_msg`, r.cpuPerMsg);
  progress(
    `  ${t.label.padEnd(18)} ${fmtRate(rate)} msgs/s  CPU ${r.cpuPerMsg.toFixed(2)} µs/msg  (${n} msgs)${r.ok ? '' : '  VERIFICATION FAILED'}`,
  );
  return rate;
}

/**
 * Warms t up and returns how many notifications it sends in config.notifyMs. Short warm-ups
 * first, then two of a quarter of a run each: the rate rises as the code warms up, and a
 * count taken from a cold run made a run last a fifth of what it should.
 */
async function notifyCount(t: Transport, size: number): Promise<number> {
  const least = 10_000;
  const warmUp = async (n: number) => {
    const rate = await notifyRun(t, 'warmup', n, size);
    // A failed warm-up has no arrival time: its "rate" would size the runs wrong, or endlessly.
    if (!(Number.isFinite(rate) && rate > 0)) throw new Error(`warm-up of ${n} notifications gave no rate`);
    return rate;
  };
  let rate = await warmUp(least);
  for (let i = 0; i < 2; i++) rate = await warmUp(Math.max(least, Math.round((rate * config.notifyMs) / 4000)));
  return Math.max(least, Math.round((rate * config.notifyMs) / 1000));
}

async function payloadRun(t: Transport, metric: string, n: number, payloads: Buffer[], seed: number): Promise<void> {
  const r = await oneWay(t, 'payload', n, payloads, seed);
  const gbps = (n * payloads[0].length) / r.seconds / 1e9;
  record(t.key, metric, gbps);
  recordExtra(t.key, `${metric}_cpu_us_per_mib`, r.cpuPerMsg / (payloads[0].length / (1 << 20)));
  progress(
    `  ${t.label.padEnd(18)} ${gbps.toFixed(3)} GB/s  (${n} x ${payloads[0].length >> 20} MiB, every byte verified: ${r.ok ? 'ok' : 'FAILED'})`,
  );
}

async function idleRun(entry: TransportEntry): Promise<void> {
  const t = entry.create!();
  live.add(t);
  try {
    await withTimeout(t.setup(), STEP_TIMEOUT_MS, `${t.label} setup`);
    const ping = Buffer.alloc(64, 0x11);
    ping[0] = OP_ECHO;
    for (let i = 0; i < 100; i++) await t.roundTrip(ping); // connected and used once
    // A fresh Node process keeps V8's threads busy for seconds after start-up (lazy compiles,
    // the memory reducer's collection ~8 s in), more the more code it loaded: measured at once,
    // that start-up, not the open channel, decided this row (0.2-0.5 % of a core for a peer
    // that loads RxJS against 0.006 % for one that does not, with a 12 s window).
    await sleep(config.idleSettleMs);
    await t.control({ op: 'cpuMark' });
    // From outside, on the scheduler's clock: exact (getrusage() charges whole 4 ms ticks,
    // which made this row mostly noise), and no control message in the window costs the peer
    // anything. Our own reads fall outside the window: ourselves last at its start, first at
    // its end. Needs schedstat, and the peer as our only child.
    const children = childPids();
    const peerPid = children.length === 1 ? children[0] : -1;
    const cpu0 = process.cpuUsage();
    const peer0 = peerPid > 0 ? threadCpuUs(peerPid) : NaN;
    const self0 = threadCpuUs(process.pid);
    const w0 = now();
    await sleep(config.idleMs);
    const self1 = threadCpuUs(process.pid);
    const peer1 = peerPid > 0 ? threadCpuUs(peerPid) : NaN;
    const wallUs = Number(now() - w0) / 1e3;
    const local = process.cpuUsage(cpu0);
    const peer = (await t.control({ op: 'cpuRead' })) as CpuReply;
    const exact = Number.isFinite(self1 - self0) && Number.isFinite(peer1 - peer0);
    const benchUs = exact ? self1 - self0 : cpuTotal(local);
    const peerUs = exact ? peer1 - peer0 : cpuTotal(peer);
    const pct = ((benchUs + peerUs) / wallUs) * 100;
    record(t.key, 'idle', pct);
    recordExtra(t.key, 'idle_split_pct', { bench: (benchUs / wallUs) * 100, peer: (peerUs / wallUs) * 100 });
    recordExtra(t.key, 'idle_getrusage_pct', ((cpuTotal(local) + cpuTotal(peer)) / wallUs) * 100);
    progress(
      `  ${t.label.padEnd(18)} ${pct.toFixed(4)} % of one core over ${(wallUs / 1e6).toFixed(1)} s ` +
        `(${exact ? 'scheduler clock' : 'getrusage'}; bench ${((benchUs / wallUs) * 100).toFixed(4)} %, peer ${((peerUs / wallUs) * 100).toFixed(4)} %)`,
    );
  } finally {
    await t.teardown();
    live.delete(t);
  }
}

/**
 * The idle measurement with nothing open: what the bench process itself costs in the window
 * (its timer, its /proc reads, V8's own threads). A transport whose row sits at this level does
 * nothing while idle; nothing can be measured below it.
 */
const idleFloorRuns: number[] = [];

async function idleFloorRun(): Promise<void> {
  const self0 = threadCpuUs(process.pid);
  const w0 = now();
  await sleep(config.idleMs);
  const self1 = threadCpuUs(process.pid);
  const wallUs = Number(now() - w0) / 1e3;
  if (!Number.isFinite(self1 - self0)) return; // no schedstat: getrusage() ticks are too coarse
  const pct = ((self1 - self0) / wallUs) * 100;
  idleFloorRuns.push(pct);
  progress(`  ${'nothing open'.padEnd(18)} ${pct.toFixed(4)} % of one core over ${(wallUs / 1e6).toFixed(1)} s`);
}

/** Is the shmchannel idle row indistinguishable from having nothing open? */
function idleAtFloor(shmIdle: number): boolean {
  return idleFloorRuns.length > 0 && shmIdle <= Math.max(...idleFloorRuns);
}

async function roundTrips(scenario: 'rt' | 'rt1core', ts: Transport[]): Promise<void> {
  const ping = randomBytes(64);
  ping[0] = OP_ECHO;
  progress(
    `round trip, 64 B, sequential${scenario === 'rt1core' ? ', both processes on one core' : ''}: ` +
      `warm-up ${config.roundTripWarmup}, then ${config.roundTrips} timed per run`,
  );
  for (const t of [...ts]) {
    await guarded(ts, t, 'round-trip warm-up', async () => {
      for (let i = 0; i < config.roundTripWarmup; i++) await t.roundTrip(ping);
    });
  }
  await rounds(`round trip 64 B${scenario === 'rt1core' ? ', one core' : ''}`, ts, config.runs, (t) =>
    roundTripRun(t, scenario, ping, config.roundTrips, Math.min(200, config.roundTripWarmup)),
  );
}

/**
 * Round trips with the bench process and every peer on one core: a one-core machine or
 * container, or a machine whose other cores are busy. A transport that polls pays here for
 * every look it does not give the core away. The peers are forked while this process is
 * pinned (they inherit its affinity), and the affinity is restored afterwards. Whatever goes
 * wrong here is a note: the other scenarios' results still get reported.
 */
async function oneCoreRoundTrips(entries: TransportEntry[], keys: string[]): Promise<void> {
  const mask = affinityOf(process.pid);
  if (mask === undefined) {
    notes.push('one-core round trips skipped: taskset (util-linux) is not available');
    return;
  }
  const active: Transport[] = [];
  try {
    setAffinity(process.pid, lowestCpuOf(mask));
    for (const e of entries) {
      if (e.create === undefined || !keys.includes(e.key)) continue;
      const t = await setupTransport(e, (reason) => notes.push(`${e.label}: did not start on one core: ${reason}`));
      if (t !== undefined) active.push(t);
    }
    if (!active.some((t) => t.key === BASELINE)) throw new Error('the Unix-socket baseline did not start');
    await roundTrips('rt1core', active);
  } catch (err) {
    notes.push(`one-core round trips incomplete: ${(err as Error).message}`);
  } finally {
    try {
      setAffinity(process.pid, mask);
    } catch (err) {
      notes.push(`the CPU affinity (${mask}) could not be restored: ${(err as Error).message}`);
    }
    for (const t of active) {
      await t.teardown().catch(() => undefined);
      live.delete(t);
    }
  }
}

/** The CPU affinity mask of `pid` (hex, as taskset prints it), or undefined without taskset. */
function affinityOf(pid: number): string | undefined {
  try {
    const out = execFileSync('taskset', ['-p', String(pid)], { encoding: 'utf8' });
    return /:\s*([0-9a-f,]+)\s*$/i.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** The mask of the lowest CPU in `mask` (e.g. "c" -> "4"): a run may not be allowed CPU 0. */
function lowestCpuOf(mask: string): string {
  const bits = BigInt(`0x${mask.replace(/,/g, '')}`);
  if (bits === 0n) throw new Error(`no CPU in the affinity mask ${mask}`);
  return (bits & -bits).toString(16);
}

/** Pins every thread of `pid` (taskset -a); throws if taskset refuses. */
function setAffinity(pid: number, hexMask: string): void {
  execFileSync('taskset', ['-a', '-p', hexMask, String(pid)], { stdio: 'ignore' });
}

/** Runs `body` for every transport, `runs` times, rotating the order so none always goes first. */
async function rounds(
  name: string,
  ts: Transport[],
  runs: number,
  body: (t: Transport, run: number) => Promise<void>,
): Promise<void> {
  for (let run = 0; run < runs; run++) {
    progress(`${name}: run ${run + 1}/${runs}`);
    const order = [...ts];
    for (let k = 0; k < order.length; k++) {
      const t = order[(k + run) % order.length];
      await guarded(ts, t, name, () => body(t, run));
    }
  }
}

/**
 * Runs one step of one transport with a time limit. A transport other than the baseline
 * that fails or hangs is dropped (with a note) instead of ending the benchmark.
 */
async function guarded(ts: Transport[], t: Transport, what: string, step: () => Promise<void>): Promise<void> {
  if (!ts.includes(t)) return;
  try {
    await withTimeout(step(), STEP_TIMEOUT_MS, `${t.label} ${what}`);
  } catch (err) {
    if (t.key === BASELINE) throw err;
    const message = `failed during ${what}: ${(err as Error).message}; dropped from the remaining scenarios`;
    problems.push(`${t.label}: ${message}`);
    progress(`${t.label}: ${message}`);
    ts.splice(ts.indexOf(t), 1);
    live.delete(t);
    try {
      t.emergencyCleanup();
    } catch {
      // best effort
    }
  }
}

// ---- output ----

function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}

function fmtValue(metric: Metric, v: number): string {
  if (!Number.isFinite(v)) return '-';
  switch (metric.unit) {
    case 'msgs/s':
      return fmtRate(v);
    case 'GB/s':
      return v.toFixed(v >= 10 ? 1 : 3);
    default:
      if (metric.id === 'idle') return v.toFixed(3);
      return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }
}

function fmtRatio(r: number | null): string {
  if (r === null || !Number.isFinite(r)) return 'n/a';
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

/** Below this the socket's idle CPU is noise, and a ratio to it means nothing. */
const IDLE_RATIO_FLOOR_PCT = 0.01;

function ratioOf(metric: Metric, value: number, base: number): number | null {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base <= 0) return null;
  if (metric.id === 'idle' && base < IDLE_RATIO_FLOOR_PCT) return null;
  return value / base;
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---- main ----

function installSignalCleanup(): void {
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: closing channels and peers\n`);
    for (const t of live) {
      try {
        t.emergencyCleanup();
      } catch {
        // best effort
      }
    }
    setTimeout(() => process.exit(130), 300);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/** Starts the transport's pair; undefined (after `failed` is told why) if it does not start. */
async function setupTransport(
  entry: TransportEntry,
  failed: (reason: string) => void = (reason) => {
    entry.note = `failed to start: ${reason}`;
    progress(`${entry.label}: ${entry.note}`);
  },
): Promise<Transport | undefined> {
  const t = entry.create!();
  live.add(t);
  try {
    await withTimeout(t.setup(), STEP_TIMEOUT_MS, `${t.label} setup`);
    return t;
  } catch (err) {
    failed((err as Error).message);
    await t.teardown().catch(() => undefined);
    live.delete(t);
    return undefined;
  }
}

function wanted(scenario: string): boolean {
  return config.scenarios.length === 0 || config.scenarios.includes(scenario);
}

async function main(): Promise<void> {
  installSignalCleanup();
  const entries = transportEntries();
  progress(
    `shmchannel benchmark: ${config.quick ? 'QUICK mode, ' : ''}${config.runs} runs per scenario, ` +
      `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}`,
  );
  for (const e of entries) if (e.create === undefined) progress(`${e.label}: ${e.note}`);

  if (wanted('idle')) {
    // First, while the bench process is fresh (no garbage from big payloads for the GC to
    // reclaim in the background), and one pair at a time, freshly connected: only that
    // transport's threads exist in both processes.
    progress(`idle open channel: ${config.idleMs} ms, ${config.idleRuns} runs`);
    // The floor takes its turn in the rotation like a transport.
    const idleSlots: (TransportEntry | 'floor')[] = [...entries.filter((e) => e.create !== undefined), 'floor'];
    for (let run = 0; run < config.idleRuns; run++) {
      progress(`idle: run ${run + 1}/${config.idleRuns}`);
      for (let k = 0; k < idleSlots.length; k++) {
        const e = idleSlots[(k + run) % idleSlots.length];
        if (e === 'floor') {
          await idleFloorRun();
          continue;
        }
        await idleRun(e).catch((err: unknown) =>
          problems.push(`${e.label}: idle run failed: ${(err as Error).message}`),
        );
      }
    }
  }

  // Everything but the idle scenario runs with all transports connected at once (their peers
  // sleep in epoll/futex while another transport is measured), interleaved run by run.
  const active: Transport[] = [];
  for (const e of entries) {
    if (e.create === undefined) continue;
    const t = await setupTransport(e);
    if (t !== undefined) active.push(t);
  }
  if (!active.some((t) => t.key === BASELINE)) throw new Error('the Unix-socket baseline did not start');
  const ran = active.map((t) => t.key);

  try {
    if (wanted('rt')) await roundTrips('rt', active);
    for (const [id, size] of [
      ['notify64', 64],
      ['notify4k', 4096],
    ] as const) {
      if (!wanted(id)) continue;
      progress(
        `notifications of ${size} B one way: runs of about ${config.notifyMs} ms (count per transport from its warm-up)`,
      );
      const counts = new Map<string, number>();
      for (const t of [...active])
        await guarded(active, t, `${id} warm-up`, async () => {
          counts.set(t.key, await notifyCount(t, size));
        });
      for (const [key, n] of counts) recordExtra(key, `${id}_msgs_per_run`, n);
      await rounds(`notifications ${size} B`, active, config.runs, async (t) => {
        await notifyRun(t, id, counts.get(t.key)!, size);
      });
    }
    for (const [id, size, n] of [
      ['payload1m', 1 << 20, config.payload1m],
      ['payload16m', 16 << 20, config.payload16m],
    ] as const) {
      if (!wanted(id)) continue;
      const seed = size + 1;
      const payloads = payloadSet(size, seed);
      progress(`payloads of ${size >> 20} MiB one way: ${n} per run, compared byte for byte by the receiver`);
      for (const t of [...active])
        await guarded(active, t, `${id} warm-up`, () => payloadRun(t, 'warmup', Math.max(2, n / 4), payloads, seed));
      await rounds(`payloads ${size >> 20} MiB`, active, config.runs, (t) => payloadRun(t, id, n, payloads, seed));
    }
  } finally {
    for (const t of active) {
      await t.teardown();
      live.delete(t);
    }
  }

  if (wanted('rt1core')) {
    await oneCoreRoundTrips(
      entries,
      active.map((t) => t.key),
    );
  }

  if (wanted('notify64')) {
    progress('in-process floor: 64 B views to an RxJS subscriber, no transport');
    floor64 = deliveryFloor64();
  }
  if (wanted('payload1m')) {
    progress('in-process floor: 1 MiB messages copied once into owned Buffers to an RxJS subscriber, no transport');
    floor1m = await deliveryFloor1m();
  }
  report(entries, ran);
}

/** msgs/s of deliveryFloor64() and GB/s of deliveryFloor1m(), if measured. */
let floor64 = NaN;
let floor1m = NaN;

function report(entries: TransportEntry[], ran: string[]): void {
  const seconds = (Date.now() - started) / 1000;
  const metrics = METRICS.filter((m) => wanted(m.scenario));
  const med = (key: string, metric: string) => median(samples.get(key)?.get(metric) ?? []);

  const runsNote =
    `medians of ${config.runs} runs (idle: ${config.idleRuns} runs of ${config.idleMs / 1000} s); ` +
    `round trips: ${config.roundTrips}/run; notifications: runs of about ${config.notifyMs} ms; ` +
    `payloads: ${config.payload1m} x 1 MiB, ${config.payload16m} x 16 MiB per run`;
  const valueRows = entries.map((e) => [
    e.label,
    ...metrics.map((m) => (ran.includes(e.key) ? fmtValue(m, med(e.key, m.id)) : 'skipped')),
  ]);
  const ratioRows = entries.map((e) => [
    e.label,
    ...metrics.map((m) =>
      ran.includes(e.key) ? fmtRatio(ratioOf(m, med(e.key, m.id), med(BASELINE, m.id))) : 'skipped',
    ),
  ]);
  const spreadRows = entries.map((e) => [
    e.label,
    ...metrics.map((m) => {
      const s = relativeSpread(samples.get(e.key)?.get(m.id) ?? []);
      return Number.isFinite(s) ? `${(s * 100).toFixed(0)}%` : '-';
    }),
  ]);
  const headers = ['', ...metrics.map((m) => m.column)];

  const out: string[] = [];
  out.push('');
  out.push(
    `shmchannel benchmark — ${new Date().toISOString()} — ${os.cpus().length} CPUs, Node ${process.version}, ${os.platform()} ${os.release()}`,
  );
  out.push(runsNote);
  out.push('');
  out.push('Figures (RT = request/response round trip, one in flight; CPU = both processes; GB = 1e9 bytes)');
  out.push(table(headers, valueRows));
  out.push('');
  out.push(
    `Ratio to the unix socket row (${metrics.map((m) => `${m.column}: ${m.better === 'lower' ? 'lower' : 'higher'} is better`).join('; ')})`,
  );
  out.push(table(headers, ratioRows));
  out.push('');
  out.push('Spread across runs, (max - min) / median');
  out.push(table(headers, spreadRows));
  for (const e of entries) if (e.note !== undefined) out.push(`note: ${e.label} ${e.note}`);
  if (metrics.some((m) => m.id === 'idle') && med(BASELINE, 'idle') < IDLE_RATIO_FLOOR_PCT) {
    out.push(`note: the socket's idle CPU is below ${IDLE_RATIO_FLOOR_PCT}% of a core (noise), so idle ratios are n/a`);
  }
  if (idleFloorRuns.length > 0) {
    out.push(
      `note: idle with nothing open (the bench process's own timer, /proc reads and V8 threads): ` +
        `${median(idleFloorRuns).toFixed(3)} % of a core (median of ${idleFloorRuns.length}, highest ` +
        `${Math.max(...idleFloorRuns).toFixed(3)} %); a row at that level does nothing while idle`,
    );
  }
  for (const n of notes) out.push(`note: ${n}`);
  for (const p of problems) out.push(`VERIFICATION PROBLEM: ${p}`);
  out.push('');
  out.push(...targetLines(ran));
  out.push('');
  out.push(`total time ${seconds.toFixed(0)} s`);
  process.stdout.write(out.join('\n') + '\n');

  // JSON
  const resultsDir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const json = {
    date: new Date().toISOString(),
    durationSeconds: Math.round(seconds),
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      platform: os.platform(),
      release: os.release(),
      node: process.version,
    },
    config,
    baseline: BASELINE,
    /** In-process bound of the 64 B row (bench/floor.ts), msgs/s; null if not measured. */
    deliveryFloor64: Number.isFinite(floor64) ? floor64 : null,
    /** Idle CPU with nothing open (% of a core): the floor of the idle row; null if not measured. */
    idleFloorPct: idleFloorRuns.length > 0 ? { median: median(idleFloorRuns), runs: idleFloorRuns } : null,
    /** In-process bound of the 1 MiB row (bench/floor.ts), GB/s; null if not measured. */
    deliveryFloor1m: Number.isFinite(floor1m) ? floor1m : null,
    metrics: metrics.map((m) => ({ id: m.id, label: m.label, unit: m.unit, better: m.better })),
    transports: entries.map((e) => ({
      key: e.key,
      label: e.label,
      ran: ran.includes(e.key),
      note: e.note,
      results: Object.fromEntries(
        metrics.map((m) => {
          const runs = samples.get(e.key)?.get(m.id) ?? [];
          const value = med(e.key, m.id);
          return [
            m.id,
            {
              median: Number.isFinite(value) ? value : null,
              ratioToBaseline: ratioOf(m, value, med(BASELINE, m.id)),
              runs,
            },
          ];
        }),
      ),
      extra: extras.get(e.key) ?? {},
    })),
    notes,
    problems,
  };
  const jsonPath = path.join(resultsDir, 'results.json');
  fs.writeFileSync(jsonPath, JSON.stringify(json, null, 2) + '\n');

  // SVG
  const palette: Record<string, string> = {
    shm: '#2b7bb9',
    socket: '#9a9a9a',
    ipc: '#e08a2c',
    zmq: '#5aa05a',
  };
  const shown = entries.filter((e) => ran.includes(e.key));
  const svg = renderChart({
    title: 'shmchannel vs Unix socket, child_process IPC, ZeroMQ — ratio to the Unix socket',
    subtitle: `${os.cpus().length} CPUs, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; medians of ${config.runs} runs; bar = value / unix-socket value`,
    series: shown.map((e) => ({ name: e.label, color: palette[e.key] ?? '#444' })),
    groups: metrics.map((m) => ({
      label: m.short,
      hint: `${m.better === 'lower' ? '↓' : '↑'} better`,
      ratios: shown.map((e) => ratioOf(m, med(e.key, m.id), med(BASELINE, m.id))),
    })),
    footnote: entries
      .filter((e) => e.note !== undefined)
      .map((e) => `${e.label} ${e.note}`)
      .concat(
        med(BASELINE, 'idle') < IDLE_RATIO_FLOOR_PCT && metrics.some((m) => m.id === 'idle')
          ? ['idle: socket ≈ 0 % of a core, ratios n/a']
          : [],
      )
      .concat(idleFloorRuns.length > 0 ? [`idle with nothing open: ${median(idleFloorRuns).toFixed(3)} %`] : [])
      .join('; '),
  });
  const svgPath = path.join(resultsDir, 'chart.svg');
  fs.writeFileSync(svgPath, svg);
  process.stderr.write(
    `wrote ${path.relative(process.cwd(), jsonPath)} and ${path.relative(process.cwd(), svgPath)}\n`,
  );
}

/** Informational: how shmchannel compares with the project's goals (never fails the run). */
function targetLines(ran: string[]): string[] {
  if (!ran.includes('shm')) return [];
  const med = (key: string, metric: string) => median(samples.get(key)?.get(metric) ?? []);
  const lines = ['Goals for shmchannel (informational, not assertions):'];
  const check = (ok: boolean | null, text: string) =>
    lines.push(`  [${ok === null ? ' - ' : ok ? 'met' : 'MISSED'}] ${text}`);
  const ratio = (metric: string) => med('shm', metric) / med(BASELINE, metric);
  const has = (metric: string) => Number.isFinite(med('shm', metric)) && Number.isFinite(med(BASELINE, metric));
  if (has('rt_p50')) {
    check(ratio('rt_p50') <= 0.25, `round trip p50 <= 0.25x socket: ${ratio('rt_p50').toFixed(2)}x`);
    // The latency-oriented option is the poll window, on by default (pollWindowUs: 200).
    check(
      med('shm', 'rt_p50') <= 10,
      `round trip p50 <= 10 µs with the poll window: ${med('shm', 'rt_p50').toFixed(1)} µs`,
    );
  }
  if (has('notify64')) {
    check(ratio('notify64') >= 5, `64 B notifications >= 5x socket msgs/s: ${ratio('notify64').toFixed(2)}x`);
    if (Number.isFinite(floor64)) {
      lines.push(
        `        bound: handing 64 B views to an RxJS subscriber in this process, with no transport at all, ` +
          `reaches ${fmtRate(floor64)} msgs/s = ${(floor64 / med(BASELINE, 'notify64')).toFixed(2)}x the socket row`,
      );
    }
  }
  if (has('payload1m')) {
    check(ratio('payload1m') >= 3, `1 MiB payloads >= 3x socket GB/s: ${ratio('payload1m').toFixed(2)}x`);
    if (Number.isFinite(floor1m)) {
      lines.push(
        `        bound: copying 1 MiB once into an owned Buffer and handing it to an RxJS subscriber in this ` +
          `process, with no transport at all, reaches ${floor1m.toFixed(2)} GB/s = ` +
          `${(floor1m / med(BASELINE, 'payload1m')).toFixed(2)}x the socket row`,
      );
    }
  }
  if (Number.isFinite(med('shm', 'idle'))) {
    const floor = idleFloorRuns.length > 0 ? ` (nothing open: ${median(idleFloorRuns).toFixed(3)}%)` : '';
    check(med('shm', 'idle') < 1, `idle channel < 1% of a core: ${med('shm', 'idle').toFixed(3)}%${floor}`);
  }
  if (ran.includes('zmq')) {
    // Idle: a row no higher than a run with nothing open does nothing, and is behind no one.
    const behind = METRICS.filter((m) => Number.isFinite(med('shm', m.id)) && Number.isFinite(med('zmq', m.id)))
      .filter((m) => !(m.id === 'idle' && idleAtFloor(med('shm', m.id))))
      .filter((m) =>
        m.better === 'lower' ? med('shm', m.id) >= med('zmq', m.id) : med('shm', m.id) <= med('zmq', m.id),
      );
    check(
      behind.length === 0,
      `ahead of zeromq on every row${behind.length ? `: behind on ${behind.map((m) => m.label).join(', ')}` : ''}`,
    );
  } else {
    check(null, 'ahead of zeromq on every row: zeromq did not run');
  }
  return lines;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('benchmark failed:', err);
    for (const t of live) {
      try {
        t.emergencyCleanup();
      } catch {
        // best effort
      }
    }
    setTimeout(() => process.exit(1), 300);
  },
);
