// CPU of an open channel left alone, as % of one core (both processes), next to the same
// measurement with nothing open.
import { childPids, cpuTotal, now, OP_ECHO, sleep, threadCpuUs, type CpuReply } from '../common';
import { config } from '../config';
import type { TransportEntry } from '../lineup';
import { progress } from '../progress';
import type { Bench, Scenario } from './scenario';

async function idleRun(bench: Bench, entry: TransportEntry): Promise<void> {
  const { lineup, results } = bench;
  let failure = '';
  const t = await lineup.start(entry, (reason) => (failure = reason));
  if (t === undefined) throw new Error(failure);
  try {
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
    results.record(t.key, 'idle', pct);
    results.recordExtra(t.key, 'idle_split_pct', { bench: (benchUs / wallUs) * 100, peer: (peerUs / wallUs) * 100 });
    results.recordExtra(t.key, 'idle_getrusage_pct', ((cpuTotal(local) + cpuTotal(peer)) / wallUs) * 100);
    progress(
      `  ${t.label.padEnd(18)} ${pct.toFixed(4)} % of one core over ${(wallUs / 1e6).toFixed(1)} s ` +
        `(${exact ? 'scheduler clock' : 'getrusage'}; bench ${((benchUs / wallUs) * 100).toFixed(4)} %, peer ${((peerUs / wallUs) * 100).toFixed(4)} %)`,
    );
  } finally {
    await lineup.stop(t);
  }
}

/**
 * The idle measurement with nothing open: what the bench process itself costs in the window
 * (its timer, its /proc reads, V8's own threads). A transport whose row sits at this level does
 * nothing while idle; nothing can be measured below it.
 */
export async function idleFloorRun(bench: Bench): Promise<void> {
  const self0 = threadCpuUs(process.pid);
  const w0 = now();
  await sleep(config.idleMs);
  const self1 = threadCpuUs(process.pid);
  const wallUs = Number(now() - w0) / 1e3;
  if (!Number.isFinite(self1 - self0)) return; // no schedstat: getrusage() ticks are too coarse
  const pct = ((self1 - self0) / wallUs) * 100;
  bench.results.idleFloorRuns.push(pct);
  progress(`  ${'nothing open'.padEnd(18)} ${pct.toFixed(4)} % of one core over ${(wallUs / 1e6).toFixed(1)} s`);
}

/**
 * First, while the bench process is fresh (no garbage from big payloads for the GC to reclaim
 * in the background), and one pair at a time, freshly connected: only that transport's
 * threads exist in both processes.
 */
export const idle: Scenario = {
  id: 'idle',
  stage: 'fresh',
  async run(bench) {
    progress(`idle open channel: ${config.idleMs} ms, ${config.idleRuns} runs`);
    // The floor takes its turn in the rotation like a transport.
    const slots: (TransportEntry | 'floor')[] = [...bench.lineup.runnable, 'floor'];
    for (let run = 0; run < config.idleRuns; run++) {
      progress(`idle: run ${run + 1}/${config.idleRuns}`);
      for (let k = 0; k < slots.length; k++) {
        const e = slots[(k + run) % slots.length];
        if (e === 'floor') {
          await idleFloorRun(bench);
          continue;
        }
        await idleRun(bench, e).catch((err: unknown) =>
          bench.results.problems.push(`${e.label}: idle run failed: ${(err as Error).message}`),
        );
      }
    }
  },
};
