// Large one-way payloads of 1 MiB and 16 MiB, compared byte for byte by the receiver; and the
// in-process bound of the 1 MiB row.
import { payloadSet } from '../common';
import { config } from '../config';
import { deliveryFloor1m } from '../floor';
import { progress } from '../progress';
import type { Transport } from '../transports/transport';
import { oneWay } from './one-way';
import type { Bench, Scenario } from './scenario';
import { guarded, rounds } from './steps';

/** Sends n payloads; records GB/s as `metric` (none: a warm-up). */
async function payloadRun(
  bench: Bench,
  t: Transport,
  n: number,
  payloads: Buffer[],
  seed: number,
  metric?: string,
): Promise<void> {
  const r = await oneWay(bench, t, { op: 'expect', kind: 'payload', n, size: payloads[0].length, seed }, payloads);
  const gbps = (n * payloads[0].length) / r.seconds / 1e9;
  if (metric !== undefined) {
    bench.results.record(t.key, metric, gbps);
    bench.results.recordExtra(t.key, `${metric}_cpu_us_per_mib`, r.cpuPerMsg / (payloads[0].length / (1 << 20)));
  }
  progress(
    `  ${t.label.padEnd(18)} ${gbps.toFixed(3)} GB/s  (${n} x ${payloads[0].length >> 20} MiB, every byte verified: ${r.ok ? 'ok' : 'FAILED'})`,
  );
}

/** `n`: payloads per run. */
function payloads(id: string, size: number, n: number): Scenario {
  return {
    id,
    stage: 'connected',
    async run(bench) {
      const active = bench.connected;
      const seed = size + 1;
      const set = payloadSet(size, seed);
      progress(`payloads of ${size >> 20} MiB one way: ${n} per run, compared byte for byte by the receiver`);
      for (const t of [...active])
        await guarded(bench, active, t, `${id} warm-up`, () => payloadRun(bench, t, Math.max(2, n / 4), set, seed));
      await rounds(bench, `payloads ${size >> 20} MiB`, active, config.runs, (t) =>
        payloadRun(bench, t, n, set, seed, id),
      );
    },
  };
}

export const payload1m = payloads('payload1m', 1 << 20, config.payload1m);
export const payload16m = payloads('payload16m', 16 << 20, config.payload16m);

/** What no transport's 1 MiB row can beat with an owned Buffer per message (bench/floor.ts). */
export const payload1mBound: Scenario = {
  id: 'payload1m',
  stage: 'after',
  async run(bench) {
    progress('in-process floor: 1 MiB messages copied once into owned Buffers to an RxJS subscriber, no transport');
    bench.results.deliveryFloor1m = await deliveryFloor1m();
  },
};
