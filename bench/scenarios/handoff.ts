// Hand-off of 16 MiB: a request carrying a message whose bytes the sender produced before the
// clock starts (shmchannel: already in a loan, sent by reference, received as a borrowed view),
// answered with 64 B once the receiver can read the whole message (it reads its length, first
// and last byte: common.ts handOffAnswer). One in flight; p50 over the run.
// Interleaved with the hand-offs, the same number of 64 B round trips, each after the sender
// copied the same 16 MiB into a scratch buffer of its own before the clock: the bound of the row.
// Producing 16 MiB just before a round trip slows that round trip down several times on our VM,
// whatever it carries (also with both ends in one process; flushed caches are our guess).
import { randomBytes } from 'node:crypto';

import { handOffConfirms, now, OP_ECHO, OP_HANDOFF } from '../common';
import { config } from '../config';
import { progress } from '../progress';
import { percentiles } from '../stats';
import type { Transport } from '../transports/transport';
import type { Bench, Scenario } from './scenario';
import { guarded, rounds } from './steps';

const SIZE = 16 << 20;
const WARMUP = 4;

async function handOffRun(
  bench: Bench,
  t: Transport,
  source: Buffer,
  ping: Buffer,
  scratch: Buffer,
  n: number,
  metric?: string,
): Promise<void> {
  const lat = new Float64Array(n);
  const ref = new Float64Array(n);
  let unconfirmed = 0;
  for (let i = 0; i < n; i++) {
    const message = await t.prepareHandOff(source);
    const t0 = now();
    const answer = await t.handOff(message);
    lat[i] = Number(now() - t0) / 1e3;
    if (!handOffConfirms(answer, source)) unconfirmed++;
    source.copy(scratch);
    const t1 = now();
    await t.roundTrip(ping);
    ref[i] = Number(now() - t1) / 1e3;
  }
  const [p50, p99] = percentiles(lat, [50, 99]);
  const [ref50] = percentiles(ref, [50]);
  if (unconfirmed > 0) bench.results.problems.push(`${t.label}: ${unconfirmed} hand-offs were not answered as sent`);
  if (metric === undefined) return;
  bench.results.record(t.key, metric, p50);
  bench.results.recordExtra(t.key, 'handoff16m_p99', p99);
  bench.results.recordExtra(t.key, 'handoff16m_rt64_after_copy_p50', ref50);
  progress(
    `  ${t.label.padEnd(18)} p50 ${p50.toFixed(1)} µs  p99 ${p99.toFixed(1)} µs  ` +
      `(64 B round trips after copying 16 MiB: p50 ${ref50.toFixed(1)} µs; hand-off ${(p50 / ref50).toFixed(2)}x that)`,
  );
}

export const handOff16m: Scenario = {
  id: 'handoff16m',
  stage: 'connected',
  async run(bench) {
    const active = bench.connected;
    const source = randomBytes(SIZE);
    source[0] = OP_HANDOFF;
    const ping = randomBytes(64);
    ping[0] = OP_ECHO;
    const scratch = Buffer.alloc(SIZE);
    progress(
      `hand-off of 16 MiB produced before the clock starts (shmchannel: in a loan), answered with 64 B ` +
        `once the receiver can read it (length, first and last byte): ${config.handoff16m} per run`,
    );
    for (const t of [...active])
      await guarded(bench, active, t, 'handoff16m warm-up', () => handOffRun(bench, t, source, ping, scratch, WARMUP));
    await rounds(bench, 'hand-off 16 MiB', active, config.runs, (t) =>
      handOffRun(bench, t, source, ping, scratch, config.handoff16m, 'handoff16m_p50'),
    );
  },
};
