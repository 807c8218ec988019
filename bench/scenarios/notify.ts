// One-way notifications of 64 B and 4 KiB, as fast as each transport takes them with its
// backpressure respected, and 64 B ones through shmchannel's batch API (notifyMany() and
// notificationBatches$; the other transports as in the 64 B row); and the in-process bounds of
// both 64 B rows.
import { config } from '../config';
import { batchFloor64, deliveryFloor64 } from '../floor';
import { fmtRate } from '../format';
import { progress } from '../progress';
import type { Transport } from '../transports/transport';
import { oneWay } from './one-way';
import type { Bench, Scenario } from './scenario';
import { guarded, rounds } from './steps';

/** How a scenario's notifications go: their size, and whether through a batch API where there is one. */
interface Mode {
  size: number;
  batch: boolean;
}

/** Sends n notifications; records them as `metric` (none: a warm-up) and returns msgs/s. */
async function notifyRun(bench: Bench, t: Transport, n: number, mode: Mode, metric?: string): Promise<number> {
  const { size, batch } = mode;
  const payload = Buffer.alloc(size, 0xa5);
  const r = await oneWay(bench, t, { op: 'expect', kind: 'notify', n, size, batch }, [payload]);
  const rate = n / r.seconds;
  if (metric !== undefined) {
    bench.results.record(t.key, metric, rate);
    bench.results.recordExtra(t.key, `${metric}_cpu_us_per_msg`, r.cpuPerMsg);
  }
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
async function notifyCount(bench: Bench, t: Transport, mode: Mode): Promise<number> {
  const least = 10_000;
  const warmUp = async (n: number) => {
    const rate = await notifyRun(bench, t, n, mode);
    // A failed warm-up has no arrival time: its "rate" would size the runs wrong, or endlessly.
    if (!(Number.isFinite(rate) && rate > 0)) throw new Error(`warm-up of ${n} notifications gave no rate`);
    return rate;
  };
  let rate = await warmUp(least);
  for (let i = 0; i < 2; i++) rate = await warmUp(Math.max(least, Math.round((rate * config.notifyMs) / 4000)));
  return Math.max(least, Math.round((rate * config.notifyMs) / 1000));
}

function notifications(id: string, size: number, batch = false): Scenario {
  const mode: Mode = { size, batch };
  const name = `notifications ${size} B${batch ? ', batch API' : ''}`;
  return {
    id,
    stage: 'connected',
    async run(bench) {
      const active = bench.connected;
      progress(
        `${name} one way${batch ? ' (shmchannel: notifyMany, notificationBatches$)' : ''}: ` +
          `runs of about ${config.notifyMs} ms (count per transport from its warm-up)`,
      );
      const counts = new Map<string, number>();
      for (const t of [...active])
        await guarded(bench, active, t, `${id} warm-up`, async () => {
          counts.set(t.key, await notifyCount(bench, t, mode));
        });
      for (const [key, n] of counts) bench.results.recordExtra(key, `${id}_msgs_per_run`, n);
      await rounds(bench, name, active, config.runs, async (t) => {
        await notifyRun(bench, t, counts.get(t.key)!, mode, id);
      });
    },
  };
}

export const notify64 = notifications('notify64', 64);
export const notify64Batch = notifications('notify64_batch', 64, true);
export const notify4k = notifications('notify4k', 4096);

/** A bound measured in the bench process (bench/floor.ts) whenever the row `id` is. */
function bound(id: string, what: string, measure: (bench: Bench) => void): Scenario {
  return {
    id,
    stage: 'after',
    async run(bench) {
      progress(`in-process floor: ${what}`);
      measure(bench);
    },
  };
}

/** What no transport's 64 B row can beat here. */
export const notify64Bound = bound('notify64', '64 B views to an RxJS subscriber, no transport', (bench) => {
  bench.results.deliveryFloor64 = deliveryFloor64();
});

/** What the batch row cannot beat here, either side. */
export const notify64BatchBound = bound(
  'notify64_batch',
  '64 B messages framed into a send batch, and handed in batches to an RxJS subscriber',
  (bench) => {
    bench.results.batchFloor64 = batchFloor64();
  },
);
