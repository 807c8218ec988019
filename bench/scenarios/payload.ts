// Large one-way payloads of 1 MiB and 16 MiB, compared byte for byte by the receiver, two ways:
//   payload1m, payload16m: the sender produces each message (copies its source into a loan on
//     shmchannel, into a buffer of its own on the others), the receiver checks every byte and
//     gives it back (shmchannel: a borrowed view, released);
//   payload1m_copy, payload16m_copy: the sender hands the transport its source Buffers as they
//     are, and shmchannel's receiver gets an owned Buffer (the rows before loans existed).
// And the in-process bounds of both kinds (bench/floor.ts).
import { payloadSet } from '../common';
import { config } from '../config';
import { deliveryFloor1m, produceCheckFloor } from '../floor';
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
  produced: boolean,
  metric?: string,
): Promise<void> {
  const size = payloads[0].length;
  const r = await oneWay(bench, t, { op: 'expect', kind: 'payload', n, size, seed, produced }, payloads);
  const gbps = (n * size) / r.seconds / 1e9;
  if (metric !== undefined) {
    bench.results.record(t.key, metric, gbps);
    bench.results.recordExtra(t.key, `${metric}_cpu_us_per_mib`, r.cpuPerMsg / (size / (1 << 20)));
  }
  progress(
    `  ${t.label.padEnd(18)} ${gbps.toFixed(3)} GB/s  (${n} x ${size >> 20} MiB, ` +
      `${produced ? 'produced by the sender, ' : ''}every byte verified: ${r.ok ? 'ok' : 'FAILED'})`,
  );
}

/** `n`: payloads per run; `produced`: the sender copies each into a loan / buffer of its own. */
function payloads(id: string, size: number, n: number, produced: boolean): Scenario {
  return {
    id,
    stage: 'connected',
    async run(bench) {
      const active = bench.connected;
      const seed = size + 1;
      const set = payloadSet(size, seed);
      const name = `payloads ${size >> 20} MiB${produced ? '' : ', owned copies'}`;
      progress(
        `${name} one way: ${n} per run, compared byte for byte by the receiver` +
          (produced
            ? '; the sender copies each into a buffer of its own (shmchannel: a loan, received as a borrowed view)'
            : ''),
      );
      for (const t of [...active])
        await guarded(bench, active, t, `${id} warm-up`, () =>
          payloadRun(bench, t, Math.max(2, n / 4), set, seed, produced),
        );
      await rounds(bench, name, active, config.runs, (t) => payloadRun(bench, t, n, set, seed, produced, id));
    },
  };
}

export const payload1m = payloads('payload1m', 1 << 20, config.payload1m, true);
export const payload1mCopy = payloads('payload1m_copy', 1 << 20, config.payload1m, false);
export const payload16m = payloads('payload16m', 16 << 20, config.payload16m, true);
export const payload16mCopy = payloads('payload16m_copy', 16 << 20, config.payload16m, false);

/** What no transport's owned-Buffer 1 MiB row can beat (bench/floor.ts). */
export const payload1mCopyBound: Scenario = {
  id: 'payload1m_copy',
  stage: 'after',
  async run(bench) {
    progress('in-process floor: 1 MiB messages copied once into owned Buffers to an RxJS subscriber, no transport');
    bench.results.deliveryFloor1m = await deliveryFloor1m();
  },
};

/** What no transport's produced-payload row can beat, either side (bench/floor.ts). */
function producedBound(id: string, size: number): Scenario {
  return {
    id,
    stage: 'after',
    async run(bench) {
      progress(
        `in-process floor: ${size >> 20} MiB messages copied into a buffer (the sender's part), ` +
          "compared byte for byte (the receiver's), no transport",
      );
      bench.results.produceCheckFloors[id] = produceCheckFloor(size);
    },
  };
}

export const payload1mBound = producedBound('payload1m', 1 << 20);
export const payload16mBound = producedBound('payload16m', 16 << 20);
