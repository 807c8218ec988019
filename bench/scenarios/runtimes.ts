// The other runtimes on the same core: 64 B round trips (p50, p99) and 64 B notifications
// between the Node package and a C program, between the Node package and a Python asyncio
// program, and between two C programs (the floor every binding is measured against), for a
// side table next to shmchannel's Node ↔ Node row of the same run (rt_p50, notify64).
//
// The peers are bench/peers/bench-peer.c (built here: `make -C native OUT=build/bench/c`, as
// `npm run build:c` builds the library, then the peer compiled -std=c99 -Wall -Wextra -Werror
// against its archive) and bench/peers/bench_peer.py (the package in python/, over the
// libshmchannel.so of that same build). Each is a server (echo: answers a request with its
// bytes; sink: counts notifications) or a client (rt: times its own round trips; source: sends
// notifications); see the head of bench-peer.c for the roles and lines. Node ↔ X: the bench
// process is the client, as with the main table's shmchannel row (whose server has a loan pool
// and borrow: true; these servers have neither, which no 64 B row uses). Without a C compiler
// (or make) or python3 the rows say so and the bench goes on.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { promisify } from 'node:util';

import { lastValueFrom } from 'rxjs';

import { Channel } from '../../lib/index';
import { now } from '../common';
import { config, STEP_TIMEOUT_MS } from '../config';
import { fmtRate } from '../format';
import { RUNTIME_PAIRS, type RuntimePair } from '../metrics';
import { progress } from '../progress';
import { percentiles } from '../stats';
import { withTimeout } from '../transports/transport';
import type { Bench, Scenario } from './scenario';

const run = promisify(execFile);

/** dist/bench/scenarios -> the repository. */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const OUT = path.join(ROOT, 'build', 'bench', 'c');
const C_PEER = path.join(OUT, 'bench-peer');
const PY_PEER = path.join(ROOT, 'bench', 'peers', 'bench_peer.py');
const SIZE = 64;
const BUILD_TIMEOUT_MS = 5 * 60_000;

let channels = 0;
const channelName = () => `/shmch-bench-${process.pid}-rt-${++channels}`;

/** How to start a peer of one runtime: a command line before its role and arguments. */
interface PeerCommand {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** A peer process, its stdout read line by line. */
class PeerProcess {
  private static readonly live = new Set<PeerProcess>();
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private wakeReader: (() => void) | undefined;
  private stderr = '';
  private exit: string | undefined;
  readonly exited: Promise<void>;

  constructor(cmd: PeerCommand, args: string[]) {
    this.child = spawn(cmd.file, [...cmd.args, ...args], { env: cmd.env, stdio: ['ignore', 'pipe', 'pipe'] });
    PeerProcess.live.add(this);
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.wakeReader?.();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise<void>((resolve) => {
      this.child.once('error', (err) => {
        this.exit = err.message;
        resolve();
      });
      this.child.once('close', (code, signal) => {
        this.exit = `exited with ${signal ?? code}`;
        resolve();
      });
    }).then(() => {
      PeerProcess.live.delete(this);
      this.wakeReader?.();
    });
  }

  /** The next line of stdout that starts with `word`, as its fields after `word`. */
  async line(word: string): Promise<string[]> {
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(`${word} `) || l === word);
      if (i >= 0) {
        const found = this.lines.splice(0, i + 1)[i];
        return found.split(' ').slice(1);
      }
      if (this.exit !== undefined)
        throw new Error(`peer ${this.exit} before "${word}"${this.stderr ? `: ${this.stderr.trim()}` : ''}`);
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
      this.wakeReader = undefined;
    }
  }

  /** SIGTERM (a server closes its channel), SIGKILL if it lingers. */
  async stop(): Promise<void> {
    if (this.exit !== undefined) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Peers left running when the bench exits (a signal, a failure) are killed. */
  static killAll(): void {
    for (const p of PeerProcess.live) p.child.kill('SIGTERM');
  }
}

process.once('exit', () => PeerProcess.killAll());

function has(command: string, args: string[]): boolean {
  const r = spawnSync(command, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

/** The peers that can run here; the reason for the others. */
async function preparePeers(): Promise<{ c?: PeerCommand; py?: PeerCommand; why: { c?: string; py?: string } }> {
  const why: { c?: string; py?: string } = {};
  let built = false;
  if (!has('cc', ['--version'])) why.c = 'no C compiler (cc) on this machine';
  else if (!has('make', ['--version'])) why.c = 'no make on this machine';
  else {
    try {
      progress(`runtimes: building the C library and bench-peer into ${path.relative(process.cwd(), OUT)}`);
      const lib = [path.join(OUT, 'libshmchannel.a'), path.join(OUT, 'libshmchannel.so')];
      await run('make', ['-C', path.join(ROOT, 'native'), `OUT=${OUT}`, ...lib], { timeout: BUILD_TIMEOUT_MS });
      built = true;
      const source = path.join(ROOT, 'bench', 'peers', 'bench-peer.c');
      const include = path.join(ROOT, 'native', 'core');
      const flags = ['-std=c99', '-Wall', '-Wextra', '-Werror', '-O2', `-I${include}`];
      const libs = [lib[0], '-lstdc++', '-lm', '-lrt', '-lpthread'];
      await run('cc', [...flags, source, '-o', C_PEER, ...libs], { timeout: BUILD_TIMEOUT_MS });
    } catch (err) {
      const e = err as Error & { stderr?: string };
      why.c = `the build failed: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' / ')}`;
    }
  }
  const c = why.c === undefined ? { file: C_PEER, args: [], env: process.env } : undefined;

  const pyEnv = {
    ...process.env,
    PYTHONPATH: path.join(ROOT, 'python'),
    SHMCHANNEL_LIB: path.join(OUT, 'libshmchannel.so'),
  };
  let py: PeerCommand | undefined;
  if (!has('python3', ['--version'])) why.py = 'no python3 on this machine';
  else if (!built) why.py = `libshmchannel.so did not build (${why.c ?? ''})`;
  else {
    const imported = spawnSync('python3', ['-c', 'import shmchannel'], { env: pyEnv, encoding: 'utf8' });
    if (imported.status !== 0)
      why.py = `python3 cannot import shmchannel: ${(imported.stderr ?? '').trim().split('\n').pop()}`;
    else py = { file: 'python3', args: [PY_PEER], env: pyEnv };
  }
  return { c, py, why };
}

/** One pair of runtimes: a server peer, and either the bench process or a client peer. */
interface Pair {
  spec: RuntimePair;
  /** Round trips: p50 and p99 in µs of n timed ones. */
  roundTrips(n: number, warmup: number): Promise<[number, number]>;
  /** n notifications: msgs/s from the first send to the last arrival, and whether all arrived in order. */
  notifications(n: number): Promise<{ rate: number; ok: boolean; detail: string }>;
  close(): Promise<void>;
}

/** Starts a server peer of `role` and returns it with its channel's name, once it listens. */
async function startServer(cmd: PeerCommand, role: 'echo' | 'sink'): Promise<[PeerProcess, string]> {
  const name = channelName();
  const server = new PeerProcess(cmd, [role, name]);
  await server.line('ready');
  return [server, name];
}

/** What the sink printed for one batch, as a rate from `t0Ns`. */
async function sinkBatch(sink: PeerProcess, n: number, t0Ns: bigint) {
  const [count, bad, lastNs] = await sink.line('batch');
  const rate = Number(count) / (Number(BigInt(lastNs) - t0Ns) / 1e9);
  const ok = Number(count) === n && Number(bad) === 0;
  return { rate, ok, detail: `${count}/${n} arrived, ${bad} out of sequence` };
}

/** The bench process as the client, as with the main table's shmchannel row. */
async function nodePair(spec: RuntimePair, cmd: PeerCommand, role: 'echo' | 'sink'): Promise<Pair> {
  const [server, name] = await startServer(cmd, role);
  const ch = new Channel(name, 'client', { connectTimeout: 10_000 });
  try {
    await ch.open();
  } catch (err) {
    await server.stop();
    throw err;
  }
  const payload = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) payload[i] = (i * 7 + 1) & 0xff;
  return {
    spec,
    async roundTrips(n, warmup) {
      for (let i = 0; i < warmup; i++) await lastValueFrom(ch.request(payload));
      const lat = new Float64Array(n);
      let mismatches = 0;
      for (let i = 0; i < n; i++) {
        const t0 = now();
        const reply = await lastValueFrom(ch.request(payload));
        lat[i] = Number(now() - t0) / 1e3;
        if (!reply.equals(payload)) mismatches++;
      }
      if (mismatches > 0) throw new Error(`${mismatches} replies did not echo the request`);
      return percentiles(lat, [50, 99]) as [number, number];
    },
    async notifications(n) {
      const p = Buffer.alloc(SIZE, 0xa5);
      const t0 = now();
      for (let i = 0; i < n; i++) {
        p.writeUInt32LE(i, 0);
        if (!ch.notify(p)) await ch.drained();
      }
      ch.notify(Buffer.from('E')); // the end marker
      return sinkBatch(server, n, t0);
    },
    async close() {
      await ch.close();
      await server.stop();
    },
  };
}

/** Two C programs: a client peer per run, against one server peer. */
async function cPair(spec: RuntimePair, cmd: PeerCommand, role: 'echo' | 'sink'): Promise<Pair> {
  const [server, name] = await startServer(cmd, role);
  const client = async (args: string[], word: string) => {
    const p = new PeerProcess(cmd, [...args]);
    const fields = await p.line(word);
    await p.exited;
    return fields;
  };
  return {
    spec,
    async roundTrips(n, warmup) {
      const [p50, p99] = await client(['rt', name, String(warmup), String(n)], 'rt');
      return [Number(p50), Number(p99)];
    },
    async notifications(n) {
      const [t0] = await client(['source', name, String(n)], 'sent');
      return sinkBatch(server, n, BigInt(t0));
    },
    close: () => server.stop(),
  };
}

type Open = (role: 'echo' | 'sink') => Promise<Pair>;

/** Every pair that can run here, each able to open itself as echo or sink; the skipped noted. */
async function openers(bench: Bench): Promise<[RuntimePair, Open][]> {
  const { c, py, why } = await preparePeers();
  const found: [RuntimePair, Open][] = [];
  for (const spec of RUNTIME_PAIRS) {
    const cmd = spec.key === 'node_py' ? py : c;
    if (cmd === undefined) {
      const reason = (spec.key === 'node_py' ? why.py : why.c) ?? 'not available';
      bench.results.runtimesSkipped[spec.key] = reason;
      progress(`runtimes: ${spec.label} skipped: ${reason}`);
      continue;
    }
    found.push([spec, (role) => (spec.key === 'c_c' ? cPair(spec, cmd, role) : nodePair(spec, cmd, role))]);
  }
  return found;
}

/**
 * Opens every pair as `role`, gives each its warm-up, runs `measure` config.runs times per pair
 * in rotating order, and closes them. A pair that fails is noted and left out from then on.
 */
async function phase(
  bench: Bench,
  role: 'echo' | 'sink',
  candidates: [RuntimePair, Open][],
  warmUp: (p: Pair) => Promise<void>,
  measure: (p: Pair) => Promise<void>,
): Promise<void> {
  const pairs: Pair[] = [];
  const failed = (spec: RuntimePair, what: string, err: unknown) => {
    const reason = `failed during ${what}: ${(err as Error).message}`;
    bench.results.runtimesSkipped[spec.key] ??= reason;
    bench.results.problems.push(`runtimes ${spec.label}: ${reason}`);
    progress(`runtimes: ${spec.label} ${reason}`);
  };
  const step = async (p: Pair, what: string, body: (p: Pair) => Promise<void>) => {
    if (!pairs.includes(p)) return;
    try {
      await withTimeout(body(p), STEP_TIMEOUT_MS, `${p.spec.label} ${what}`);
    } catch (err) {
      failed(p.spec, what, err);
      pairs.splice(pairs.indexOf(p), 1);
      await p.close().catch(() => undefined);
    }
  };
  for (const [spec, open] of candidates) {
    if (bench.results.runtimesSkipped[spec.key] !== undefined) continue;
    try {
      pairs.push(await withTimeout(open(role), STEP_TIMEOUT_MS, `${spec.label} ${role} start`));
    } catch (err) {
      failed(spec, `${role} start`, err);
    }
  }
  try {
    for (const p of [...pairs]) await step(p, `${role} warm-up`, warmUp);
    for (let r = 0; r < config.runs; r++) {
      progress(`runtimes ${role === 'echo' ? 'round trip 64 B' : 'notifications 64 B'}: run ${r + 1}/${config.runs}`);
      const order = [...pairs];
      for (let k = 0; k < order.length; k++) await step(order[(k + r) % order.length], role, measure);
    }
  } finally {
    for (const p of pairs) await p.close().catch(() => undefined);
  }
}

export const runtimes: Scenario = {
  id: 'runtimes',
  stage: 'after',
  async run(bench) {
    const { results } = bench;
    progress(
      `runtimes: 64 B round trips (warm-up ${config.roundTripWarmup}, then ${config.roundTrips} timed per run) and ` +
        `64 B notifications (runs of about ${config.notifyMs} ms) for Node ↔ C, Node ↔ Python, C ↔ C`,
    );
    const candidates = await openers(bench);
    // Round trips as the rt scenario: the whole warm-up once, 200 more before each run (a C
    // client is a fresh process each run: it gets the whole warm-up every time).
    const perRun = Math.min(200, config.roundTripWarmup);
    await phase(
      bench,
      'echo',
      candidates,
      async (p) => {
        if (p.spec.key !== 'c_c') await p.roundTrips(1, config.roundTripWarmup);
      },
      async (p) => {
        const warmup = p.spec.key === 'c_c' ? config.roundTripWarmup : perRun;
        const [p50, p99] = await p.roundTrips(config.roundTrips, warmup);
        results.recordRuntime(`rt_p50_${p.spec.key}`, p50);
        results.recordRuntime(`rt_p99_${p.spec.key}`, p99);
        progress(`  ${p.spec.label.padEnd(18)} p50 ${p50.toFixed(1)} µs  p99 ${p99.toFixed(1)} µs`);
      },
    );
    // Notifications as the notify64 scenario: counts per pair from its warm-ups, for runs of
    // about config.notifyMs.
    const counts = new Map<string, number>();
    const notify = async (p: Pair, n: number) => {
      const r = await p.notifications(n);
      if (!r.ok) throw new Error(r.detail);
      if (!(Number.isFinite(r.rate) && r.rate > 0)) throw new Error(`${n} notifications gave no rate`);
      progress(`  ${p.spec.label.padEnd(18)} ${fmtRate(r.rate)} msgs/s  (${n} msgs)`);
      return r.rate;
    };
    await phase(
      bench,
      'sink',
      candidates,
      async (p) => {
        const least = 10_000;
        let rate = await notify(p, least);
        for (let i = 0; i < 2; i++)
          rate = await notify(p, Math.max(least, Math.round((rate * config.notifyMs) / 4000)));
        counts.set(p.spec.key, Math.max(least, Math.round((rate * config.notifyMs) / 1000)));
      },
      async (p) => results.recordRuntime(`notify64_${p.spec.key}`, await notify(p, counts.get(p.spec.key)!)),
    );
  },
};
