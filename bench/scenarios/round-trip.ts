// Round trips of 64 B, one in flight: with every pair connected (rt), and with the bench
// process and every peer on one core (rt1core).
import { randomBytes } from 'node:crypto';

import { affinityOf, lowestCpuOf, setAffinity } from '../affinity';
import { cpuTotal, now, OP_ECHO, type CpuReply } from '../common';
import { BASELINE, config } from '../config';
import { progress } from '../progress';
import { percentiles } from '../stats';
import type { Transport } from '../transports/transport';
import type { Bench, Scenario } from './scenario';
import { guarded, rounds } from './steps';

type RoundTripScenario = 'rt' | 'rt1core';

/** Records `${scenario}_p50` and, as `rt`'s own rows or as extras, p99 and CPU per round trip. */
async function roundTripRun(
  bench: Bench,
  t: Transport,
  scenario: RoundTripScenario,
  payload: Buffer,
  n: number,
  warmup: number,
): Promise<void> {
  const { results } = bench;
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
  results.record(t.key, `${scenario}_p50`, p50);
  if (scenario === 'rt') {
    results.record(t.key, 'rt_p99', p99);
    results.record(t.key, 'rt_cpu', cpu);
  } else {
    results.recordExtra(t.key, `${scenario}_p99`, p99);
    results.recordExtra(t.key, `${scenario}_cpu`, cpu);
  }
  results.recordExtra(t.key, `${scenario}_cpu_split_us`, { bench: cpuTotal(local) / n, peer: cpuTotal(peer) / n });
  if (mismatches > 0) results.problems.push(`${t.label}: ${mismatches} round-trip replies did not echo the request`);
  progress(`  ${t.label.padEnd(18)} p50 ${p50.toFixed(1)} µs  p99 ${p99.toFixed(1)} µs  CPU ${cpu.toFixed(1)} µs/RT`);
}

async function roundTrips(bench: Bench, scenario: RoundTripScenario, ts: Transport[]): Promise<void> {
  const ping = randomBytes(64);
  ping[0] = OP_ECHO;
  progress(
    `round trip, 64 B, sequential${scenario === 'rt1core' ? ', both processes on one core' : ''}: ` +
      `warm-up ${config.roundTripWarmup}, then ${config.roundTrips} timed per run`,
  );
  for (const t of [...ts]) {
    await guarded(bench, ts, t, 'round-trip warm-up', async () => {
      for (let i = 0; i < config.roundTripWarmup; i++) await t.roundTrip(ping);
    });
  }
  await rounds(bench, `round trip 64 B${scenario === 'rt1core' ? ', one core' : ''}`, ts, config.runs, (t) =>
    roundTripRun(bench, t, scenario, ping, config.roundTrips, Math.min(200, config.roundTripWarmup)),
  );
}

export const roundTrip: Scenario = {
  id: 'rt',
  stage: 'connected',
  run: (bench) => roundTrips(bench, 'rt', bench.connected),
};

/**
 * Round trips with the bench process and every peer on one core: a one-core machine or
 * container, or a machine whose other cores are busy. A transport that polls pays here for
 * every look it does not give the core away. The peers are forked while this process is
 * pinned (they inherit its affinity), and the affinity is restored afterwards. Only the
 * transports that lasted through the connected stage take part. Whatever goes wrong here is a
 * note: the other scenarios' results still get reported.
 */
export const roundTripOneCore: Scenario = {
  id: 'rt1core',
  stage: 'after',
  async run(bench) {
    const { lineup, results } = bench;
    const mask = affinityOf(process.pid);
    if (mask === undefined) {
      results.notes.push('one-core round trips skipped: taskset (util-linux) is not available');
      return;
    }
    const lasted = bench.connected.map((t) => t.key);
    const pinned: Transport[] = [];
    try {
      setAffinity(process.pid, lowestCpuOf(mask));
      for (const e of lineup.runnable) {
        if (!lasted.includes(e.key)) continue;
        const t = await lineup.start(e, (reason) =>
          results.notes.push(`${e.label}: did not start on one core: ${reason}`),
        );
        if (t !== undefined) pinned.push(t);
      }
      if (!pinned.some((t) => t.key === BASELINE)) throw new Error('the Unix-socket baseline did not start');
      await roundTrips(bench, 'rt1core', pinned);
    } catch (err) {
      results.notes.push(`one-core round trips incomplete: ${(err as Error).message}`);
    } finally {
      try {
        setAffinity(process.pid, mask);
      } catch (err) {
        results.notes.push(`the CPU affinity (${mask}) could not be restored: ${(err as Error).message}`);
      }
      for (const t of pinned) await lineup.stop(t).catch(() => undefined);
    }
  },
};
